#include "relay/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>

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
  fmt::print(stderr, "{}.{:03}Z metrix-relay: {}\n", stamp, ms, line);
  std::fflush(stderr);
}

}  // namespace metrix::log
