// Recorder: the NDJSON file of every event fake-metrix accepted.
//
// One line per accepted request (answered 2xx, or dropped after it was
// accepted), in the order the records were written:
//   {"app_id":"app1","body":"<the request body, byte-exact, as a JSON string>",
//    "received_at":1700000000000,"dropped":false}
// `received_at` is milliseconds since the Unix epoch. The dev key is never
// recorded. The file is opened for appending and never truncated, so a test
// that restarts fake-metrix on the same file counts every run's events.
//
// Each line is written with one write(2) on an O_APPEND descriptor before the
// answer is sent: a reader that sees the answer also finds the line (no user
// space buffer to flush). A reader racing the write may see a last line
// without its '\n'; it should ignore it. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tools/fake-metrix/result.h"

namespace fake_metrix {

class Recorder {
 public:
  // Opens (creating with mode 0600: bodies hold device ids) `path` for appending.
  static Result<std::unique_ptr<Recorder>> open(const std::string& path);

  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  ~Recorder();

  // Appends one record. An error means the event may not be on disk: the
  // caller must not answer 2xx for it.
  Status append(std::string_view app_id, std::string_view body, int64_t received_at_ms, bool dropped);

 private:
  explicit Recorder(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace fake_metrix
