#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#ifndef METRIX_RELAY_BIN
#error "METRIX_RELAY_BIN must be defined by tests/support/CMakeLists.txt"
#endif
#ifndef FAKE_METRIX_BIN
#error "FAKE_METRIX_BIN must be defined by tests/support/CMakeLists.txt"
#endif

extern char** environ;

namespace metrix::test {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// One owner per descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Pipe make_pipe() {
  int fds[2];
  // Close-on-exec: only the dup2'd copies reach the child, so no other child
  // inherits a pipe end and keeps it open.
  if (pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

class SpawnActions {
 public:
  SpawnActions() {
    if (posix_spawn_file_actions_init(&actions_) != 0) throw std::runtime_error("posix_spawn_file_actions_init");
  }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions_); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;

  void dup2(int fd, int target) { check(posix_spawn_file_actions_adddup2(&actions_, fd, target)); }
  void open(int target, const std::string& path, int flags) {
    check(posix_spawn_file_actions_addopen(&actions_, target, path.c_str(), flags, 0600));
  }
  const posix_spawn_file_actions_t* get() const { return &actions_; }

 private:
  static void check(int rc) {
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn_file_actions: ") + std::strerror(rc));
  }
  posix_spawn_file_actions_t actions_;
};

class SpawnAttributes {
 public:
  // The child starts with every signal at its default action and none
  // blocked, whatever the test process did with its own.
  SpawnAttributes() {
    posix_spawnattr_init(&attributes_);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attributes_, &all);
    posix_spawnattr_setsigmask(&attributes_, &none);
    posix_spawnattr_setflags(&attributes_, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attributes_); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
  const posix_spawnattr_t* get() const { return &attributes_; }

 private:
  posix_spawnattr_t attributes_;
};

pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const SpawnActions& actions) {
  if (argv.empty()) throw std::runtime_error("run/start: argv is empty");
  std::map<std::string, std::string> merged;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    merged[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
  }
  for (const auto& [name, value] : env) merged[name] = value;
  std::vector<std::string> entries;
  for (const auto& [name, value] : merged) entries.push_back(name + "=" + value);

  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& entry : entries) envp.push_back(entry.data());
  envp.push_back(nullptr);

  SpawnAttributes attributes;
  pid_t pid = -1;
  // glibc's posix_spawn reports a failed exec (missing binary) as its result.
  int rc = posix_spawn(&pid, argv[0].c_str(), actions.get(), attributes.get(), args.data(), envp.data());
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

// Exit code, or -signal.
int decode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  return -1;
}

int wait_blocking(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail("waitpid");
  }
  return status;
}

// write(2) to a pipe whose reader may be gone: EPIPE is a value here, not
// a SIGPIPE that kills the test runner.
ssize_t write_no_sigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_signal, previous;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
  ssize_t n = ::write(fd, data, size);
  int saved_errno = errno;
  if (n < 0 && errno == EPIPE && !sigismember(&previous, SIGPIPE)) {
    timespec no_wait{};
    sigtimedwait(&pipe_signal, nullptr, &no_wait);  // consume the SIGPIPE this write raised
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  errno = saved_errno;
  return n;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::filesystem::path make_temp_dir(const char* prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + "XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) fail("mkdtemp " + pattern);
  return pattern;
}

}  // namespace

TempDir::TempDir() : path_(make_temp_dir("metrix-test-")) {}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;  // a destructor cannot fail the test; a leftover temp dir is harmless
  std::filesystem::remove_all(path_, ignored);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    TempDir old(std::move(*this));
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::string relay_binary() { return METRIX_RELAY_BIN; }
std::string fake_metrix_binary() { return FAKE_METRIX_BIN; }

RunResult run(const std::vector<std::string>& argv, const std::string& stdin_text,
              const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout) {
  Pipe in = make_pipe();
  Pipe out = make_pipe();
  Pipe err = make_pipe();
  SpawnActions actions;
  actions.dup2(in.read.get(), STDIN_FILENO);
  actions.dup2(out.write.get(), STDOUT_FILENO);
  actions.dup2(err.write.get(), STDERR_FILENO);
  pid_t pid = spawn(argv, env, actions);
  in.read.reset();
  out.write.reset();
  err.write.reset();
  if (fcntl(in.write.get(), F_SETFL, O_NONBLOCK) != 0) fail("fcntl");

  RunResult result;
  size_t written = 0;
  if (stdin_text.empty()) in.write.reset();
  auto deadline = Clock::now() + timeout;
  bool killed = false;
  char buffer[65536];
  // Until both output pipes reach end of file. After a timeout kill, a
  // grandchild may still hold them: give up on them a second later.
  while (out.read.get() >= 0 || err.read.get() >= 0) {
    auto now = Clock::now();
    if (!killed && now >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
      result.timed_out = true;
      deadline = now + std::chrono::seconds(1);
    } else if (killed && now >= deadline) {
      break;
    }
    pollfd fds[3];
    Fd* owners[3];
    nfds_t count = 0;
    for (Fd* fd : {&out.read, &err.read}) {
      if (fd->get() < 0) continue;
      fds[count] = pollfd{fd->get(), POLLIN, 0};
      owners[count++] = fd;
    }
    if (in.write.get() >= 0) {
      fds[count] = pollfd{in.write.get(), POLLOUT, 0};
      owners[count++] = &in.write;
    }
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int ready = poll(fds, count, static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wait_ms, 1000))));
    if (ready < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      if (owners[i] == &in.write) {
        ssize_t n = write_no_sigpipe(in.write.get(), stdin_text.data() + written, stdin_text.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        // EPIPE: the child exited or closed stdin without reading it all.
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_text.size()) in.write.reset();
        continue;
      }
      ssize_t n = ::read(owners[i]->get(), buffer, sizeof buffer);
      if (n > 0) {
        (owners[i] == &out.read ? result.out : result.err).append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        owners[i]->reset();
      }
    }
  }
  in.write.reset();
  // The pipes are closed, but the child may still run (it closed them, or a
  // grandchild held them): wait for it up to the deadline.
  int status = 0;
  while (true) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) fail("waitpid");
    if (!killed && Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
      result.timed_out = true;
      status = wait_blocking(pid);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int code = decode(status);
  if (code >= 0) {
    result.exit_code = code;
  } else {
    result.signal = -code;
  }
  return result;
}

Process Process::start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  Process process;
  process.output_dir_ = make_temp_dir("metrix-process-");
  SpawnActions actions;
  actions.open(STDIN_FILENO, "/dev/null", O_RDONLY);
  actions.open(STDOUT_FILENO, (process.output_dir_ / "stdout").string(), O_WRONLY | O_CREAT | O_TRUNC);
  actions.open(STDERR_FILENO, (process.output_dir_ / "stderr").string(), O_WRONLY | O_CREAT | O_TRUNC);
  process.pid_ = spawn(argv, env, actions);
  return process;
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      status_(std::exchange(other.status_, std::nullopt)),
      output_dir_(std::exchange(other.output_dir_, {})) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
    output_dir_ = std::exchange(other.output_dir_, {});
  }
  return *this;
}

Process::~Process() { release(); }

void Process::release() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    reap(wait_blocking(pid_));
  }
  if (!output_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(output_dir_, ignored);
  }
  pid_ = -1;
  status_.reset();
  output_dir_.clear();
}

void Process::reap(int wait_status) { status_ = decode(wait_status); }

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int status = 0;
  pid_t done = waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    reap(status);
    return false;
  }
  return true;
}

void Process::kill(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return status_;
}

std::string Process::out() const { return output_dir_.empty() ? "" : read_file(output_dir_ / "stdout"); }
std::string Process::err() const { return output_dir_.empty() ? "" : read_file(output_dir_ / "stderr"); }

bool Process::wait_for_err(std::string_view needle, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (err().find(needle) != std::string::npos) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace metrix::test
