// An independent reading of README's "What a valid event is", applied to the payload as a
// strict JSON parser (nlohmann) decodes it. The fuzz targets compare the validation
// trigger's verdict with it: two implementations of one contract, written apart, disagree
// exactly where one of them is wrong.
//
// Where SQLite's JSON functions and a strict parser may legitimately see different text
// (invalid UTF-8, escaped surrogates: the README's documented gap), there is no verdict.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace metrix::fuzz {

struct RulesVerdict {
  bool judged = true;                 // false: the text is not Unicode (the documented gap)
  std::optional<std::string> broken;  // the rule broken, in this oracle's words; nullopt: valid
};

RulesVerdict judge_event(std::string_view payload);

// Parses strict JSON (RFC 8259: no byte order mark, no NUL byte) and says whether any object
// repeats a key, compared after unescaping. nullopt if the text is not JSON.
std::optional<nlohmann::json> parse_strict(std::string_view text, bool* repeated_key);

// Printable ASCII and JSON whitespace only, no backslash: SQLite's JSON functions and a
// strict parser see the same strings, so their verdicts must agree in both directions.
bool is_plain(std::string_view text);

}  // namespace metrix::fuzz
