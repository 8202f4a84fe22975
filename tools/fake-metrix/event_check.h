// check_event: the body rules of the Metrix S2S endpoint, as fake-metrix
// enforces them.
//
// Rules, checked in this order; the first broken one decides the answer:
//   1. the body is a JSON object                          else 400 BAD_REQUEST
//   2. metrixUserId and eventSlug are non-empty strings   else 400 BAD_REQUEST
//   3. known optional keys have the documented types      else 400 BAD_REQUEST
//      (metrixSessionId, deviceIp: string; customAttributes: object of
//      strings; customMetrics: object of numbers; eventTime: integer
//      milliseconds, as a number or a string of digits)
//   4. idfa / advertisingId / oaid: exactly one is a non-empty string
//      (null or "" counts as absent; any other type is rule 3)
//        none         -> 400 IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL
//        two or more  -> 400 ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET
// Unknown keys are ignored, as far as we know the real endpoint does too:
// strictness about the payload belongs at enqueue time (the validation trigger), not here.
// Whether the slug exists is the caller's question (404 depends on flags).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "tools/fake-metrix/answer.h"

namespace fake_metrix {

struct CheckedEvent {
  std::string event_slug;
};

// Pure; thread-safe. Returns the event's slug when the body passes every rule,
// otherwise the 400 answer Metrix gives for it.
std::variant<CheckedEvent, Answer> check_event(std::string_view body);

}  // namespace fake_metrix
