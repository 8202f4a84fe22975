#include "tools/fake-metrix/record.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace fake_metrix {

Result<std::unique_ptr<Recorder>> Recorder::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot open record file " + path + ": " + std::strerror(errno)};
  return std::unique_ptr<Recorder>(new Recorder(fd));
}

Recorder::~Recorder() { ::close(fd_); }

Status Recorder::append(std::string_view app_id, std::string_view body, int64_t received_at_ms, bool dropped) {
  nlohmann::json record = {
      {"app_id", app_id},
      {"body", body},
      {"received_at", received_at_ms},
      {"dropped", dropped},
  };
  std::string line;
  try {
    // Strict UTF-8: replacing a byte would make "body" differ from what was
    // received. Accepted bodies passed the JSON parser, which only accepts UTF-8.
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    return Error{std::string("cannot record a body that is not UTF-8: ") + e.what()};
  }
  line += '\n';
  // O_APPEND makes each write land at the end even with concurrent writers;
  // the loop only matters for a short write (disk full, signal).
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{std::string("cannot write the record file: ") + std::strerror(errno)};
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  return ok_status();
}

}  // namespace fake_metrix
