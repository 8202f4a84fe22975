#include "storage/postgres/text.h"

namespace metrix::pg {

namespace {

// The length of the valid UTF-8 sequence (no NUL) at the start of `in`, or 0.
std::size_t sequence(std::string_view in) {
  const auto c = static_cast<unsigned char>(in[0]);
  const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  bool ok = n > 0 && c != 0 && n <= in.size() && !(n == 2 && c < 0xC2) && !(n == 4 && c > 0xF4);
  for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[k]) & 0xC0) == 0x80;
  if (ok && n == 3) {
    const auto d = static_cast<unsigned char>(in[1]);
    ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0);  // overlong; surrogates
  }
  if (ok && n == 4) {
    const auto d = static_cast<unsigned char>(in[1]);
    ok = !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d >= 0x90);
  }
  return ok ? n : 0;
}

}  // namespace

std::size_t text_prefix(std::string_view in) {
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t n = sequence(in.substr(i));
    if (n == 0) break;
    i += n;
  }
  return i;
}

std::string as_text(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  while (!in.empty()) {
    const std::size_t n = text_prefix(in);
    out.append(in.substr(0, n));
    if (n == in.size()) break;
    out.append("\xEF\xBF\xBD");
    in.remove_prefix(n + 1);
  }
  return out;
}

std::optional<std::string> text_rule(std::string_view payload, const std::optional<std::string>& app_id,
                                     const std::optional<std::string>& dedup_key) {
  constexpr std::string_view rule = ": must be UTF-8 text without a NUL byte (PostgreSQL's text holds nothing else)";
  if (text_prefix(payload) != payload.size()) return "payload" + std::string(rule);
  if (app_id && text_prefix(*app_id) != app_id->size()) return "app_id" + std::string(rule);
  if (dedup_key && text_prefix(*dedup_key) != dedup_key->size()) return "dedup_key" + std::string(rule);
  return std::nullopt;
}

}  // namespace metrix::pg
