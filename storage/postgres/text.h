// What PostgreSQL's text can hold: valid UTF-8 without a NUL byte. A producer's field that is
// not is refused before it reaches the server (whose refusal, 22021, would abort the caller's
// transaction); what the relay records from elsewhere (an answer's body) is made text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace metrix::pg {

// The length of the valid UTF-8 (no NUL) prefix of `in`: in.size() when all of it is.
std::size_t text_prefix(std::string_view in);

// `in` with every byte that is not part of valid UTF-8, and every NUL, replaced by U+FFFD.
std::string as_text(std::string_view in);

// The first of an event's fields that PostgreSQL cannot store, as "field: rule", or nullopt.
std::optional<std::string> text_rule(std::string_view payload, const std::optional<std::string>& app_id,
                                     const std::optional<std::string>& dedup_key);

}  // namespace metrix::pg
