#include "relay/notify.h"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <string>

namespace metrix {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  // > 0: a watchdog is expected of this process (WATCHDOG_PID, when set, names it).
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_us_ = static_cast<std::int64_t>(usec);
}

void ServiceNotifier::send(const char* state) {
  // The answer is not used: the service manager may be gone, and delivery goes on without it.
  if (enabled_) (void)sd_notify(0, state);
}

void ServiceNotifier::ready(std::string_view status) {
  last_status_ = status;
  send(fmt::format("READY=1\nSTATUS={}", status).c_str());
}

void ServiceNotifier::status(std::string_view status) {
  if (status == last_status_) return;
  last_status_ = status;
  send(fmt::format("STATUS={}", status).c_str());
}

void ServiceNotifier::reloading(std::int64_t monotonic_us) {
  // MONOTONIC_USEC lets a Type=notify-reload service manager (systemd 253 and later) match
  // this reload to its request; older ones ignore it.
  send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", monotonic_us).c_str());
}

void ServiceNotifier::stopping() { send("STOPPING=1"); }

void ServiceNotifier::watchdog(std::int64_t monotonic_us) {
  if (watchdog_us_ == 0) return;
  if (last_ping_us_ >= 0 && monotonic_us - last_ping_us_ < watchdog_us_ / 2) return;
  last_ping_us_ = monotonic_us;
  send("WATCHDOG=1");
}

}  // namespace metrix
