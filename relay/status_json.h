// The JSON of `metrix-relay status --json`, also served by the relay's GET /status: one
// function, so the two cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>

#include "storage/status.h"

namespace metrix {

nlohmann::ordered_json status_json(const StatusSnapshot& snapshot, const Health& health,
                                   const HealthThresholds& thresholds);

}  // namespace metrix
