// Fault injection settings: what fake-metrix does wrong, and on purpose.
//
// Every setting has one key, used both as a command-line flag (`--KEY VALUE`)
// and at run time by `POST /__control?KEY=VALUE&...`, and parsed by the same
// function (apply_setting) so that the two can never disagree:
//
//   key            value                       effect
//   latency-ms     integer >= 0                delay added to every S2S answer
//   latency-slug   a slug, or empty            latency-ms only for events of this
//                                              slug (a request that hangs while
//                                              the others are answered); empty: all
//   error-rate     fraction 0..1               answered 500, 502 or 503
//   rate-429       fraction 0..1               answered 429 with Retry-After
//   retry-after    integer seconds >= 0        the Retry-After value of 429s
//   drop-rate      fraction 0..1               of the events that would be
//                                              accepted: recorded, then the
//                                              answer is lost (in doubt)
//   drop-style     close | partial             how an answer is lost (below)
//   s2s-disabled   app ids, comma separated    403 S2S_FEATURE_NOT_AVAILABLE
//   slugs, slug    slugs, comma separated      others are 404 EVENT_TYPE_DOES_NOT_EXIST;
//                                              empty: every slug is known
//   script         steps, comma separated      answers for the next requests
//   seed           unsigned integer            reseeds the fault dice
// List values replace the previous list; an empty value clears it. In keys,
// `_` is accepted for `-` (s2s_disabled=app1).
//
// Drop styles, as a libcurl client sees them:
//   partial  (default) the status line ("200" for an accepted event) and
//            headers are sent, then the
//            connection closes in the middle of the chunked body: the
//            transfer fails with CURLE_PARTIAL_FILE (18) although
//            CURLINFO_RESPONSE_CODE says 200 -- a client must look at the
//            transfer result first. Always seen as an error.
//   close    the connection is shut down before any byte of the answer. On
//            a fresh connection libcurl fails with CURLE_GOT_NOTHING (52,
//            "Empty reply from server"; a receive error over TLS). On a
//            reused keep-alive connection libcurl cannot tell this from a
//            stale idle connection: it silently resends the request on a new
//            connection ("Connection died, retrying a fresh connect") and
//            reports that answer -- the event arrives twice and the client
//            sees success. That is what a real server dying after accepting
//            does to a keep-alive client; use it to test duplicates.
//
// Script steps: `CODE` or `CODE:ERROR_NAME` (an error answer, e.g. 500,
// 429, 404:EVENT_TYPE_DOES_NOT_EXIST), a 2xx code (handle the request
// normally: a valid event is recorded and answered with that code, an invalid
// one still gets its 4xx), `drop` (handle normally, record the event if it is
// accepted, then lose the answer in the drop-style manner), `drop-partial`,
// `drop-close` (the same with that style). Random faults (error-rate,
// rate-429, drop-rate) never apply to a request that used a script step.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tools/fake-metrix/answer.h"
#include "tools/fake-metrix/result.h"

namespace fake_metrix {

enum class DropStyle { close, partial };

struct ScriptStep {
  enum class Kind { answer, normal, drop };
  Kind kind = Kind::normal;
  Answer answer;  // answer: sent as is; normal: answer.status is the 2xx code
  std::optional<DropStyle> drop_style;  // drop: this style; nullopt: the drop-style setting
};

// Parses a whole script ("500,503,429,404:EVENT_TYPE_DOES_NOT_EXIST,drop,200").
Result<std::vector<ScriptStep>> parse_script(std::string_view text);

// The settings a request is answered with. Copied as a whole, so one request
// never sees half of a /__control change.
struct Settings {
  int64_t latency_ms = 0;
  std::string latency_slug;  // empty: latency_ms applies to every request
  double error_rate = 0;
  double rate_429 = 0;
  int64_t retry_after_s = 1;
  double drop_rate = 0;
  DropStyle drop_style = DropStyle::partial;
  std::set<std::string> s2s_disabled;
  std::set<std::string> slugs;  // empty: every slug is known
};

// A set of key=value assignments, staged before it takes effect. Script and
// seed are not Settings: the script is consumed by requests and the seed acts
// on the dice, so the server applies them itself.
struct Change {
  Settings settings;
  std::optional<std::vector<ScriptStep>> script;
  std::optional<uint64_t> seed;
};

// Applies `key`=`value` to `change`. On error (unknown key, malformed or out
// of range value) returns a message naming the key, and `change` is unchanged.
Status apply_setting(Change& change, std::string_view key, std::string_view value);

// The settings as JSON text, for /__control answers (there is no secret in them).
std::string describe(const Settings& settings, uint64_t seed, size_t script_steps_left);

// One request's random draws, uniform in [0, 1), compared with the rates.
struct Roll {
  double rate_429 = 1;
  double error = 1;
  double drop = 1;
  int error_pick = 0;  // 0, 1, 2: which of 500, 502, 503
};

// The seeded source of Rolls. Every request draws one full Roll whatever the
// rates are, so a given seed produces the same faults for the same sequence
// of requests. Thread-safe.
class Dice {
 public:
  explicit Dice(uint64_t seed) : seed_(seed), engine_(seed) {}
  void reseed(uint64_t seed);
  uint64_t seed() const;
  Roll roll();

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  std::mt19937_64 engine_;
};

}  // namespace fake_metrix
