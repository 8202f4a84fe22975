#include "tools/fake-metrix/faults.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

namespace fake_metrix {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Splits "a, b,,c" into {"a", "b", "c"}: empty items are dropped, so "" is
// the empty list.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  while (true) {
    size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

Result<int64_t> parse_count(std::string_view key, std::string_view text) {
  text = trim(text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    return Error{std::string(key) + ": expected an integer >= 0, got '" + std::string(text) + "'"};
  }
  return value;
}

Result<double> parse_fraction(std::string_view key, std::string_view text) {
  // from_chars for double is in libstdc++ 11+, and unlike strtod ignores the locale.
  text = trim(text);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) || value < 0 || value > 1) {
    return Error{std::string(key) + ": expected a fraction between 0 and 1, got '" + std::string(text) + "'"};
  }
  return value;
}

Result<ScriptStep> parse_step(std::string_view token) {
  ScriptStep step;
  if (token == "drop" || token == "drop-close" || token == "drop-partial") {
    step.kind = ScriptStep::Kind::drop;
    if (token == "drop-close") step.drop_style = DropStyle::close;
    if (token == "drop-partial") step.drop_style = DropStyle::partial;
    return step;
  }
  size_t colon = token.find(':');
  std::string_view code_text = token.substr(0, colon);
  int code = 0;
  auto [end, ec] = std::from_chars(code_text.data(), code_text.data() + code_text.size(), code);
  if (ec != std::errc() || end != code_text.data() + code_text.size() || code < 200 || code > 599) {
    return Error{"script: '" + std::string(token) +
                 "' is not a step (CODE, CODE:ERROR_NAME with CODE in 200..599, drop, drop-partial or drop-close)"};
  }
  if (code < 300) {
    if (colon != std::string_view::npos) {
      return Error{"script: '" + std::string(token) + "': a 2xx step takes no error name"};
    }
    step.kind = ScriptStep::Kind::normal;
    step.answer = Answer{code, "", "event accepted"};
    return step;
  }
  step.kind = ScriptStep::Kind::answer;
  step.answer = error_answer(code);
  step.answer.message = "fake-metrix: scripted " + std::to_string(code);
  if (colon != std::string_view::npos) {
    std::string_view name = token.substr(colon + 1);
    if (name.empty()) return Error{"script: '" + std::string(token) + "': empty error name"};
    step.answer.error = std::string(name);
  }
  return step;
}

const char* style_name(DropStyle style) { return style == DropStyle::close ? "close" : "partial"; }

}  // namespace

Result<std::vector<ScriptStep>> parse_script(std::string_view text) {
  std::vector<ScriptStep> steps;
  for (const std::string& token : split_list(text)) {
    Result<ScriptStep> step = parse_step(token);
    if (!step.ok()) return step.error();
    steps.push_back(std::move(step.value()));
  }
  return steps;
}

Status apply_setting(Change& change, std::string_view key_as_given, std::string_view value) {
  std::string normalized(key_as_given);
  std::replace(normalized.begin(), normalized.end(), '_', '-');
  std::string_view key = normalized;
  Settings& s = change.settings;
  if (key == "latency-ms" || key == "retry-after") {
    Result<int64_t> count = parse_count(key, value);
    if (!count.ok()) return count.error();
    (key == "latency-ms" ? s.latency_ms : s.retry_after_s) = count.value();
    return ok_status();
  }
  if (key == "error-rate" || key == "rate-429" || key == "drop-rate") {
    Result<double> fraction = parse_fraction(key, value);
    if (!fraction.ok()) return fraction.error();
    (key == "error-rate" ? s.error_rate : key == "rate-429" ? s.rate_429 : s.drop_rate) = fraction.value();
    return ok_status();
  }
  if (key == "latency-slug") {
    s.latency_slug = std::string(trim(value));
    return ok_status();
  }
  if (key == "drop-style") {
    std::string_view style = trim(value);
    if (style != "close" && style != "partial") {
      return Error{"drop-style: expected close or partial, got '" + std::string(style) + "'"};
    }
    s.drop_style = style == "close" ? DropStyle::close : DropStyle::partial;
    return ok_status();
  }
  if (key == "s2s-disabled") {
    std::vector<std::string> apps = split_list(value);
    s.s2s_disabled = std::set<std::string>(apps.begin(), apps.end());
    return ok_status();
  }
  if (key == "slugs" || key == "slug") {
    std::vector<std::string> slugs = split_list(value);
    s.slugs = std::set<std::string>(slugs.begin(), slugs.end());
    return ok_status();
  }
  if (key == "script") {
    Result<std::vector<ScriptStep>> script = parse_script(value);
    if (!script.ok()) return script.error();
    change.script = std::move(script.value());
    return ok_status();
  }
  if (key == "seed") {
    std::string_view text = trim(value);
    uint64_t seed = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seed);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return Error{"seed: expected an unsigned integer, got '" + std::string(text) + "'"};
    }
    change.seed = seed;
    return ok_status();
  }
  return Error{"unknown setting '" + std::string(key_as_given) +
               "' (known: latency-ms, latency-slug, error-rate, rate-429, retry-after, drop-rate, drop-style, "
               "s2s-disabled, slugs, script, seed)"};
}

std::string describe(const Settings& settings, uint64_t seed, size_t script_steps_left) {
  nlohmann::json out = {
      {"latency-ms", settings.latency_ms},
      {"latency-slug", settings.latency_slug},
      {"error-rate", settings.error_rate},
      {"rate-429", settings.rate_429},
      {"retry-after", settings.retry_after_s},
      {"drop-rate", settings.drop_rate},
      {"drop-style", style_name(settings.drop_style)},
      {"s2s-disabled", settings.s2s_disabled},
      {"slugs", settings.slugs},
      {"script-steps-left", script_steps_left},
      {"seed", seed},
  };
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Dice::reseed(uint64_t seed) {
  std::lock_guard lock(mutex_);
  seed_ = seed;
  engine_.seed(seed);
}

uint64_t Dice::seed() const {
  std::lock_guard lock(mutex_);
  return seed_;
}

Roll Dice::roll() {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, 2);
  std::lock_guard lock(mutex_);
  Roll roll;
  roll.rate_429 = unit(engine_);
  roll.error = unit(engine_);
  roll.drop = unit(engine_);
  roll.error_pick = pick(engine_);
  return roll;
}

}  // namespace fake_metrix
