// Child processes and temporary directories for tests that run the real
// binaries (metrix-relay, fake-metrix).
//
// Processes are started with posix_spawn, never through a shell: arguments
// reach the program exactly as given. `env` entries are added to (and
// override) the test's own environment. Failures to start throw
// std::runtime_error: in a test, that fails the test case with the message,
// which is what a caller would do with an error value anyway.
//
// Not thread-safe: one Process / TempDir per test thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metrix::test {

// A fresh directory under the system temporary directory, removed with all
// its content when the TempDir is destroyed. Movable; a moved-from TempDir
// owns nothing.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path file(std::string_view name) const { return path_ / name; }
  std::string db() const { return (path_ / "outbox.db").string(); }  // path()/"outbox.db"

 private:
  std::filesystem::path path_;
};

std::string relay_binary();        // the built metrix-relay (METRIX_RELAY_BIN)
std::string fake_metrix_binary();  // the built fake-metrix (FAKE_METRIX_BIN)

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that ended the process, 0 if it exited
  std::string out;
  std::string err;
  bool timed_out = false;  // killed with SIGKILL after `timeout`
};

// Runs argv[0] (a path) with argv[1..], waits for it, and captures stdout and
// stderr. `stdin_text` is fed to its stdin, which is then closed (a child
// that exits without reading it all is fine). After `timeout` the child is
// killed with SIGKILL and timed_out is set.
RunResult run(const std::vector<std::string>& argv, const std::string& stdin_text = {},
              const std::map<std::string, std::string>& env = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A started child. Its stdout and stderr go to files in a private temporary
// directory (readable at any time through out() and err()); its stdin is
// /dev/null. The destructor kills (SIGKILL) and reaps a child still running,
// and removes those files. Movable, not copyable.
class Process {
 public:
  static Process start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  // False once the child has exited (and then it has been reaped).
  bool running();
  // Sends `sig`; does nothing once the child has been reaped.
  void kill(int sig);
  // Waits up to `timeout` for the child to end: its exit code, or -signal if
  // a signal ended it; nullopt if it is still running. Repeatable: a reaped
  // child's status is kept.
  std::optional<int> wait(std::chrono::milliseconds timeout);

  std::string out() const;  // everything written to stdout so far
  std::string err() const;  // everything written to stderr so far
  // Waits up to `timeout` for stderr to contain `needle`; false if it never did.
  bool wait_for_err(std::string_view needle, std::chrono::milliseconds timeout) const;

 private:
  Process() = default;
  void reap(int wait_status);
  void release();

  pid_t pid_ = -1;
  std::optional<int> status_;  // exit code or -signal once reaped
  std::filesystem::path output_dir_;
};

}  // namespace metrix::test
