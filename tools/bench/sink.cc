// bench-sink: the HTTP sink of tools/bench/run-bench: as little work per request as an HTTP/1.1
// server can do, so that on a small machine the benchmark measures the relay, not the sink.
//
// One thread, epoll, keep-alive, requests read whole (Content-Length bodies; no chunked
// uploads). Every POST whose Authorization header is the key in BENCH_SINK_KEY is answered
// 200 with a small JSON body; a wrong or missing key is answered 403, so a relay that loses
// its header shows up as failed rows, not as speed. With --error-rate F (changeable at run time)
// that share of the POSTs with the right key, drawn at random, is answered 503
// SERVICE_UNAVAILABLE (no Retry-After) instead: a Metrix that is failing. After --latency-ms
// (changeable at run time) every answer, 503s included, is held back that long, without
// blocking other connections.
//
//   GET  /__stats                   {"requests":N,"ok":N,"refused":N,"unavailable":N,"connections":N,
//                                    "open_connections":N,"max_open_connections":N,"latency_ms":N,
//                                    "error_rate":F}
//   POST /__control?latency-ms=N&error-rate=F   sets either or both for later requests; answers
//                                    the stats
//
// fake-metrix checks every event as Metrix would and serves each connection on its own
// thread; wrk shows it several times faster than the relay, but on two cores the CPU it
// spends per request is taken from the relay. This sink spends a few microseconds.
//
// Usage: BENCH_SINK_KEY=KEY bench-sink [--port N] [--port-file FILE] [--latency-ms N] [--error-rate F]
// Prints "bench-sink listening on http://127.0.0.1:PORT". SIGINT/SIGTERM: exit 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

using Clock = std::chrono::steady_clock;

// A file descriptor with one owner.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct Connection {
  Fd fd;
  std::uint64_t generation = 0;  // tells a delayed answer whether its connection is still this one
  std::string in;
  std::string out;
  bool want_write = false;
};

struct Delayed {
  Clock::time_point due;
  int fd;
  std::uint64_t generation;
  const std::string* answer;  // one of the constant answers below
};

struct Stats {
  std::uint64_t requests = 0, ok = 0, refused = 0, unavailable = 0, connections = 0, open = 0, max_open = 0;
};

// xorshift64*: which requests fail. Seeded the same every run, so a run's share of errors does
// not depend on the clock; which rows they hit still depends on the order requests arrive in.
class Draw {
 public:
  // True with probability `share` (0 never, 1 always).
  bool below(double share) {
    if (share <= 0) return false;
    if (share >= 1) return true;
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    std::uint64_t x = state_ * 0x2545F4914F6CDD1DULL;
    return static_cast<double>(x >> 11) * 0x1.0p-53 < share;
  }

 private:
  std::uint64_t state_ = 0x9E3779B97F4A7C15ULL;
};

// A whole answer: status line, headers with the body's length, body.
std::string http_answer(std::string_view status, std::string_view body) {
  return "HTTP/1.1 " + std::string(status) + "\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

const std::string kOk = http_answer("200 OK", R"({"status":200,"message":""})");
const std::string kRefused =
    http_answer("403 Forbidden", R"({"error":"INVALID_PARAMETERS","status":403,"message":"wrong dev key"})");
const std::string kUnavailable =
    http_answer("503 Service Unavailable", R"({"error":"SERVICE_UNAVAILABLE","status":503})");

// The value of `name` (e.g. "latency-ms") in a query string "a=1&b=2", or nullptr.
const char* query_value(const std::string& query, std::string_view name) {
  for (size_t pos = 0; pos < query.size();) {
    size_t end = query.find('&', pos);
    if (end == std::string::npos) end = query.size();
    std::string_view pair(query.data() + pos, end - pos);
    if (pair.size() > name.size() && pair.rfind(name, 0) == 0 && pair[name.size()] == '=') {
      return query.c_str() + pos + name.size() + 1;  // strtod/atoi stop at the '&'
    }
    pos = end + 1;
  }
  return nullptr;
}

class Sink {
 public:
  Sink(Fd listener, Fd epoll, Fd signals, std::string key, int latency_ms, double error_rate)
      : listener_(std::move(listener)), epoll_(std::move(epoll)), signals_(std::move(signals)),
        key_(std::move(key)), latency_ms_(latency_ms), error_rate_(error_rate) {}

  int serve() {
    epoll_event events[256];
    for (;;) {
      // Wake when the first delayed answer is due, to the nanosecond: epoll_wait's whole
      // milliseconds, rounded up, made every answer 0.5 ms later than --latency-ms on average.
      // (Kernels before 5.11, or a seccomp filter that does not know it, refuse epoll_pwait2:
      // then epoll_wait it is.)
      timespec wait{};
      const timespec* timeout = nullptr;
      long long ns = 0;
      if (!delayed_.empty()) {
        ns = std::max<long long>(0, std::chrono::nanoseconds(delayed_.front().due - Clock::now()).count());
        wait.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        wait.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        timeout = &wait;
      }
      int n = -1;
      if (precise_wait_) {
        n = epoll_pwait2(epoll_.get(), events, 256, timeout, nullptr);
        if (n < 0 && (errno == ENOSYS || errno == EPERM)) precise_wait_ = false;
      }
      if (!precise_wait_) {
        n = epoll_wait(epoll_.get(), events, 256, timeout ? static_cast<int>((ns + 999'999) / 1'000'000) : -1);
      }
      if (n < 0 && errno != EINTR) {
        std::perror("bench-sink: epoll_wait");
        return 1;
      }
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == signals_.get()) return 0;
        if (fd == listener_.get()) {
          accept_all();
          continue;
        }
        auto it = connections_.find(fd);
        if (it == connections_.end()) continue;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          if (!read_from(it->second)) {
            close_connection(fd);
            continue;
          }
        }
        if (events[i].events & EPOLLOUT) {
          if (!flush(it->second)) close_connection(fd);
        }
      }
      release_due();
    }
  }

 private:
  void accept_all() {
    for (;;) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or a connection reset before accept: nothing to do
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        continue;
      }
      Connection& c = connections_[fd];
      c.fd = Fd(fd);
      c.generation = ++generation_;
      c.in.clear();
      c.out.clear();
      c.want_write = false;
      ++stats_.connections;
      stats_.max_open = std::max(stats_.max_open, ++stats_.open);
    }
  }

  void close_connection(int fd) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    connections_.erase(fd);  // closes the descriptor
    --stats_.open;
  }

  // Reads what is there and answers every complete request. False: the connection is done.
  bool read_from(Connection& c) {
    char buffer[16384];
    for (;;) {
      ssize_t n = ::read(c.fd.get(), buffer, sizeof buffer);
      if (n > 0) {
        c.in.append(buffer, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buffer) break;
        continue;
      }
      if (n == 0) return false;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return false;
    }
    size_t consumed = 0;
    for (;;) {
      std::string_view rest(c.in.data() + consumed, c.in.size() - consumed);
      size_t head_end = rest.find("\r\n\r\n");
      if (head_end == std::string_view::npos) break;
      std::string_view head = rest.substr(0, head_end + 2);
      size_t body_bytes = 0;
      std::string_view auth;
      bool has_auth = false;
      for (size_t pos = head.find("\r\n") + 2; pos < head.size();) {
        size_t eol = head.find("\r\n", pos);
        std::string_view line = head.substr(pos, eol - pos);
        pos = eol + 2;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view name = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (name.size() == 14 && strncasecmp(name.data(), "content-length", 14) == 0) {
          body_bytes = std::strtoul(std::string(value).c_str(), nullptr, 10);
        } else if (name.size() == 13 && strncasecmp(name.data(), "authorization", 13) == 0) {
          auth = value;
          has_auth = true;
        }
      }
      if (rest.size() < head_end + 4 + body_bytes) break;  // the body is not all here yet
      answer(c, head, has_auth && auth == key_);
      consumed += head_end + 4 + body_bytes;
    }
    c.in.erase(0, consumed);
    return flush(c);
  }

  void answer(Connection& c, std::string_view head, bool key_ok) {
    if (head.rfind("GET /__stats", 0) == 0) {
      c.out += http_answer("200 OK", stats_json());
      return;
    }
    if (head.rfind("POST /__control?", 0) == 0) {
      std::string query(head.substr(16, head.find(' ', 16) - 16));
      if (const char* v = query_value(query, "latency-ms")) latency_ms_ = std::atoi(v);
      if (const char* v = query_value(query, "error-rate")) error_rate_ = std::strtod(v, nullptr);
      c.out += http_answer("200 OK", stats_json());
      return;
    }
    ++stats_.requests;
    const std::string* reply = &kOk;
    if (!key_ok) {
      reply = &kRefused;
      ++stats_.refused;
    } else if (draw_.below(error_rate_)) {
      reply = &kUnavailable;
      ++stats_.unavailable;
    } else {
      ++stats_.ok;
    }
    if (latency_ms_ > 0) {
      delayed_.push_back({Clock::now() + std::chrono::milliseconds(latency_ms_), c.fd.get(), c.generation, reply});
      return;
    }
    c.out += *reply;
  }

  // Writes delayed answers that are due. The delay is the same for all, so the queue is in order.
  void release_due() {
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.front().due <= now) {
      Delayed d = delayed_.front();
      delayed_.pop_front();
      auto it = connections_.find(d.fd);
      if (it == connections_.end() || it->second.generation != d.generation) continue;  // client gone
      it->second.out += *d.answer;
      if (!flush(it->second)) close_connection(d.fd);
    }
  }

  bool flush(Connection& c) {
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;
    }
    bool want_write = !c.out.empty();
    if (want_write != c.want_write) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
      ev.data.fd = c.fd.get();
      epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
      c.want_write = want_write;
    }
    return true;
  }

  std::string stats_json() const {
    char text[400];
    std::snprintf(text, sizeof text,
                  "{\"requests\":%llu,\"ok\":%llu,\"refused\":%llu,\"unavailable\":%llu,\"connections\":%llu,"
                  "\"open_connections\":%llu,\"max_open_connections\":%llu,\"latency_ms\":%d,\"error_rate\":%.6g}",
                  static_cast<unsigned long long>(stats_.requests), static_cast<unsigned long long>(stats_.ok),
                  static_cast<unsigned long long>(stats_.refused), static_cast<unsigned long long>(stats_.unavailable),
                  static_cast<unsigned long long>(stats_.connections), static_cast<unsigned long long>(stats_.open),
                  static_cast<unsigned long long>(stats_.max_open), latency_ms_, error_rate_);
    return text;
  }

  Fd listener_, epoll_, signals_;
  std::string key_;
  int latency_ms_;
  double error_rate_;  // the share of good POSTs answered 503
  Draw draw_;
  bool precise_wait_ = true;  // epoll_pwait2 works here
  std::unordered_map<int, Connection> connections_;
  std::deque<Delayed> delayed_;
  std::uint64_t generation_ = 0;
  Stats stats_;
};

int usage(const char* why) {
  std::fprintf(stderr, "bench-sink: %s\nusage: BENCH_SINK_KEY=KEY bench-sink [--port N] [--port-file FILE] "
                       "[--latency-ms N] [--error-rate F]\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, latency_ms = 0;
  double error_rate = 0;
  std::string port_file;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) return usage("every flag takes a value");
    const char* value = argv[++i];
    if (flag == "--port") port = std::atoi(value);
    else if (flag == "--port-file") port_file = value;
    else if (flag == "--latency-ms") latency_ms = std::atoi(value);
    else if (flag == "--error-rate") error_rate = std::strtod(value, nullptr);
    else return usage("unknown flag");
  }
  const char* key = std::getenv("BENCH_SINK_KEY");
  if (!key || !*key) return usage("BENCH_SINK_KEY is not set");
  if (!(error_rate >= 0 && error_rate <= 1)) return usage("--error-rate is a share between 0 and 1");

  // Signals arrive through a descriptor, so the loop stops between two requests.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Fd signals(signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC));

  Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listener.get() < 0 || signals.get() < 0) {
    std::perror("bench-sink: socket");
    return 1;
  }
  int one = 1;
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(listener.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener.get(), 4096) != 0) {
    std::perror("bench-sink: bind/listen on 127.0.0.1");
    return 1;
  }
  socklen_t length = sizeof address;
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length);
  port = ntohs(address.sin_port);

  Fd epoll(epoll_create1(EPOLL_CLOEXEC));
  for (int fd : {listener.get(), signals.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll.get() < 0 || epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      std::perror("bench-sink: epoll");
      return 1;
    }
  }
  std::printf("bench-sink listening on http://127.0.0.1:%d\n", port);
  std::fflush(stdout);
  if (!port_file.empty()) {
    // Written whole under another name, then renamed: a reader never sees half a number.
    std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      std::perror("bench-sink: --port-file");
      return 1;
    }
  }
  Sink sink(std::move(listener), std::move(epoll), std::move(signals), key, latency_ms, error_rate);
  return sink.serve();
}
