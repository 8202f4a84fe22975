// The relay's side of systemd's notify protocol (sd_notify(3)): READY=1 once it can deliver,
// STATUS= with the progress line's summary, RELOADING=1 and READY=1 around a reload,
// STOPPING=1 at shutdown, and WATCHDOG=1 pings. Without $NOTIFY_SOCKET (not started by
// systemd as a Type=notify service) every call does nothing, so the relay runs the same
// anywhere. Used from the loop's thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace metrix {

class ServiceNotifier {
 public:
  ServiceNotifier();  // reads $NOTIFY_SOCKET and $WATCHDOG_USEC (and $WATCHDOG_PID)

  void ready(std::string_view status);
  void status(std::string_view status);
  void reloading(std::int64_t monotonic_us);
  void stopping();

  // The interval the service manager expects pings within; 0 when it expects none.
  std::int64_t watchdog_us() const { return watchdog_us_; }

  // Sends WATCHDOG=1 when half the watchdog interval has passed since the last ping. The
  // loop calls it each turn, only while it is healthy: a turn that never comes, or a write
  // that hangs, stops the pings and systemd restarts the service.
  void watchdog(std::int64_t monotonic_us);

 private:
  void send(const char* state);

  bool enabled_ = false;
  std::string last_status_;  // STATUS= is sent when it changes, not with every progress line
  std::int64_t watchdog_us_ = 0;
  std::int64_t last_ping_us_ = -1;
};

}  // namespace metrix
