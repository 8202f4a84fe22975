#include "fuzz/event_rules.h"

#include <arpa/inet.h>

#include <cmath>
#include <set>
#include <vector>

#include "fuzz/support.h"

namespace metrix::fuzz {

using nlohmann::json;

std::optional<json> parse_strict(std::string_view text, bool* repeated_key) {
  // nlohmann skips a byte order mark, and reads a NUL byte as the end of the text: JSON has
  // neither (RFC 8259), and what follows a NUL is sent to Metrix all the same.
  if (text.substr(0, 3) == "\xEF\xBB\xBF" || text.find('\0') != std::string_view::npos) return std::nullopt;
  std::vector<std::set<std::string>> open;  // the keys of each object being parsed, innermost last
  *repeated_key = false;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    using event_t = json::parse_event_t;
    if (event == event_t::object_start) open.emplace_back();
    else if (event == event_t::object_end && !open.empty()) open.pop_back();
    else if (event == event_t::key && !open.empty() && !open.back().insert(parsed.get<std::string>()).second) {
      *repeated_key = true;
    }
    return true;
  };
  json parsed = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

bool is_plain(std::string_view text) {
  for (unsigned char c : text) {
    if (c == '\\' || c >= 0x7f || (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')) return false;
  }
  return true;
}

namespace {

bool non_empty_string(const json& v) { return v.is_string() && !v.get_ref<const std::string&>().empty(); }

// A textual IPv4 address (four decimal octets, no leading zeros) or IPv6 address, as the
// C library reads them. A NUL byte is never part of an address.
bool is_ip_address(const std::string& text) {
  if (text.find('\0') != std::string::npos) return false;
  unsigned char address[16];
  if (text.find(':') == std::string::npos) return inet_pton(AF_INET, text.c_str(), address) == 1;
  return text.size() <= 45 && inet_pton(AF_INET6, text.c_str(), address) == 1;
}

std::optional<std::string> broken_rule(const json& event) {
  static const std::set<std::string> kKeys = {"metrixUserId",     "metrixSessionId", "idfa",     "advertisingId",
                                              "oaid",             "customAttributes", "customMetrics",
                                              "deviceIp",         "eventSlug",       "eventTime"};
  if (!event.is_object()) return "payload is not an object";
  for (const auto& [key, value] : event.items()) {
    if (!kKeys.count(key)) return "unknown key '" + key + "'";
  }
  if (!event.contains("metrixUserId") || !non_empty_string(event["metrixUserId"])) return "metrixUserId";
  if (!event.contains("eventSlug") || !non_empty_string(event["eventSlug"])) return "eventSlug";
  if (event.contains("metrixSessionId") && !non_empty_string(event["metrixSessionId"])) return "metrixSessionId";
  int device_ids = 0;
  for (const char* key : {"idfa", "advertisingId", "oaid"}) {
    if (!event.contains(key)) continue;
    ++device_ids;
    if (!non_empty_string(event[key])) return std::string(key) + " is not a non-empty string";
  }
  if (device_ids != 1) return "not exactly one device id";
  bool has_currency = false, has_revenue = false;
  if (event.contains("customAttributes")) {
    const json& attributes = event["customAttributes"];
    if (!attributes.is_object()) return "customAttributes is not an object";
    for (const auto& [key, value] : attributes.items()) {
      if (!value.is_string()) return "customAttributes." + key + " is not a string";
    }
    if (attributes.contains("_currency")) {
      has_currency = true;
      const auto& currency = attributes["_currency"].get_ref<const std::string&>();
      if (currency != "IRR" && currency != "USD" && currency != "EUR") return "currency " + currency;
    }
  }
  if (event.contains("customMetrics")) {
    const json& metrics = event["customMetrics"];
    if (!metrics.is_object()) return "customMetrics is not an object";
    for (const auto& [key, value] : metrics.items()) {
      if (!value.is_number()) return "customMetrics." + key + " is not a number";
      if (value.is_number_float() && !std::isfinite(value.get<double>())) {
        return "customMetrics." + key + " is not finite";
      }
    }
    has_revenue = metrics.contains("_revenue");
  }
  if (has_currency != has_revenue) return "revenue without currency, or currency without revenue";
  if (event.contains("eventTime")) {
    const json& time = event["eventTime"];
    if (!time.is_number_integer()) return "eventTime is not an integer";
    // 1973-03-03 and 2100-01-01, in milliseconds. A positive literal parses as unsigned.
    constexpr std::uint64_t kEarliest = 100000000000, kLatest = 4102444800000;
    bool in_range = false;
    if (time.is_number_unsigned()) {
      in_range = time.get<std::uint64_t>() >= kEarliest && time.get<std::uint64_t>() <= kLatest;
    } else {
      in_range = time.get<std::int64_t>() >= static_cast<std::int64_t>(kEarliest) &&
                 time.get<std::int64_t>() <= static_cast<std::int64_t>(kLatest);
    }
    if (!in_range) return "eventTime out of range";
  }
  if (event.contains("deviceIp")) {
    const json& ip = event["deviceIp"];
    if (!ip.is_string() || !is_ip_address(ip.get<std::string>())) return "deviceIp is not an IP address";
  }
  return std::nullopt;
}

}  // namespace

RulesVerdict judge_event(std::string_view payload) {
  if (!is_utf8(payload) || has_surrogate_escape(payload)) return RulesVerdict{false, std::nullopt};
  if (payload.size() > 65536) return RulesVerdict{true, "payload larger than 64 KiB"};
  bool repeated = false;
  auto event = parse_strict(payload, &repeated);
  if (!event) return RulesVerdict{true, "payload is not JSON"};
  if (repeated) return RulesVerdict{true, "an object repeats a key"};
  return RulesVerdict{true, broken_rule(*event)};
}

}  // namespace metrix::fuzz
