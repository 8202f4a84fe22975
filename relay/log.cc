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

void write(std::string_view line) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  // A log line that cannot be written (stderr piped into a `head` that has exited, a full
  // disk) is lost, and the relay goes on: the outbox is the record, not the log. fmt::print
  // would throw instead, and end the relay mid-drain.
  const std::string text = fmt::format("{}.{:03}Z metrix-relay: {}\n", stamp, ms, line);
  (void)std::fwrite(text.data(), 1, text.size(), stderr);
  (void)std::fflush(stderr);
  std::clearerr(stderr);
}

}  // namespace metrix::log
