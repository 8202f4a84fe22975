#include "relay/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace metrix::log {

namespace {
bool g_verbose = false;
}

void set_verbose(bool verbose) { g_verbose = verbose; }
bool verbose() { return g_verbose; }

std::string utc(std::int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", stamp, ms % 1000);
}

void write(std::string_view line) {
  using namespace std::chrono;
  const auto now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  // A log line that cannot be written (stderr piped into a `head` that has exited, a full
  // disk) is lost, and the relay goes on: the outbox is the record, not the log. fmt::print
  // would throw instead, and end the relay mid-drain.
  const std::string text = fmt::format("{} metrix-relay: {}\n", utc(now), line);
  (void)std::fwrite(text.data(), 1, text.size(), stderr);
  (void)std::fflush(stderr);
  std::clearerr(stderr);
}

}  // namespace metrix::log
