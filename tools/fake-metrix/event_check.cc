#include "tools/fake-metrix/event_check.h"

#include <cstdint>

#include <nlohmann/json.hpp>

namespace fake_metrix {
namespace {

using nlohmann::json;

Answer bad_request(std::string message) { return Answer{400, kBadRequest, std::move(message)}; }

bool is_non_empty_string(const json* value) {
  return value != nullptr && value->is_string() && !value->get_ref<const std::string&>().empty();
}

const json* field(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

bool is_digits(const std::string& text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::variant<CheckedEvent, Answer> check_event(std::string_view body) {
  // No exceptions: a malformed body is an ordinary answer, not an error.
  json event = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded()) return bad_request("the body is not valid JSON");
  if (!event.is_object()) return bad_request("the body must be a JSON object");

  if (!is_non_empty_string(field(event, "metrixUserId"))) {
    return bad_request("metrixUserId must be a non-empty string");
  }
  const json* slug = field(event, "eventSlug");
  if (!is_non_empty_string(slug)) return bad_request("eventSlug must be a non-empty string");

  for (const char* name : {"metrixSessionId", "deviceIp"}) {
    const json* value = field(event, name);
    if (value != nullptr && !value->is_null() && !value->is_string()) {
      return bad_request(std::string(name) + " must be a string");
    }
  }
  if (const json* attributes = field(event, "customAttributes"); attributes && !attributes->is_null()) {
    if (!attributes->is_object()) return bad_request("customAttributes must be an object");
    for (const auto& [key, value] : attributes->items()) {
      if (!value.is_string()) return bad_request("customAttributes." + key + " must be a string");
    }
  }
  if (const json* metrics = field(event, "customMetrics"); metrics && !metrics->is_null()) {
    if (!metrics->is_object()) return bad_request("customMetrics must be an object");
    for (const auto& [key, value] : metrics->items()) {
      if (!value.is_number()) return bad_request("customMetrics." + key + " must be a number");
    }
  }
  if (const json* time = field(event, "eventTime"); time && !time->is_null()) {
    // The reference shows eventTime both as a number and as a quoted string of
    // digits; both are milliseconds.
    bool integral = time->is_number_unsigned() || (time->is_number_integer() && time->get<int64_t>() >= 0) ||
                    (time->is_string() && is_digits(time->get_ref<const std::string&>()));
    if (!integral) return bad_request("eventTime must be an integer number of milliseconds");
  }

  int device_ids = 0;
  for (const char* name : {"idfa", "advertisingId", "oaid"}) {
    const json* value = field(event, name);
    if (value == nullptr || value->is_null()) continue;
    if (!value->is_string()) return bad_request(std::string(name) + " must be a string");
    if (!value->get_ref<const std::string&>().empty()) ++device_ids;
  }
  if (device_ids == 0) {
    return Answer{400, kNoDeviceId, "one of idfa, advertisingId or oaid must be set"};
  }
  if (device_ids > 1) {
    return Answer{400, kTwoDeviceIds, "only one of idfa, advertisingId or oaid may be set"};
  }
  return CheckedEvent{slug->get<std::string>()};
}

}  // namespace fake_metrix
