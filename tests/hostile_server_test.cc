// The relay against a misbehaving server: answers that are slow, huge, malformed, cut
// short, or carry absurd Retry-After values. Each is bounded by a timeout or a cap, and
// none is ever counted as a delivery.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "tests/outbox_fixture.h"
#include "storage/clock.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// A loopback TCP server that reads each HTTP request and answers with whatever bytes the
// test wants: the raw misbehaviour a real HTTP library would never produce.
class RawServer {
 public:
  using Answer = std::function<void(int fd)>;

  explicit RawServer(Answer answer) : answer_(std::move(answer)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listen_fd_ >= 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 64) == 0);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::thread([this, fd] {
        // Read headers and the body (Content-Length), one request per connection.
        std::string in;
        char buf[4096];
        size_t need = std::string::npos;
        while (need == std::string::npos || in.size() < need) {
          ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          in.append(buf, static_cast<size_t>(n));
          auto end = in.find("\r\n\r\n");
          if (end != std::string::npos && need == std::string::npos) {
            auto cl = in.find("Content-Length: ");
            size_t body = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
            need = end + 4 + body;
          }
        }
        ++requests_;
        answer_(fd);
        ::close(fd);
      }).detach();
    }
  }

  Answer answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

void write_all(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

TEST_CASE("an answer trickling in a byte at a time is cut by the timeout and never counted as sent") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  RawServer server([](int fd) {
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    for (int i = 0; i < 30; ++i) {
      write_all(fd, "x");
      std::this_thread::sleep_for(100ms);
    }
  });
  auto r = run(relay_args(dir.db(), server.url(), {"--until-idle", "--timeout", "500ms", "--max-attempts", "2"}), {},
               relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT status || ' ' || last_error FROM metrix_outbox") == "dead timeout (gave up after 2 attempts)");
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE finished_at - started_at < 2000") == 2);
}

TEST_CASE("a huge answer is read within the timeout and only its first KiB is kept") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  RawServer server([](int fd) {
    std::string body(20 * 1024 * 1024, 'y');
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n");
    write_all(fd, body);
  });
  auto r = run(relay_args(dir.db(), server.url(), {"--until-idle"}), {}, relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT status FROM metrix_outbox") == "sent");
  CHECK(scalar(dir.db(), "SELECT length(response) FROM metrix_outbox_attempt") == 1024);
}

TEST_CASE("a malformed answer and an answer cut short are transport errors, retried, never sent") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  {
    RawServer garbage([](int fd) { write_all(fd, "SURELY NOT HTTP\r\n\r\n"); });
    auto r = run(relay_args(dir.db(), garbage.url(), {"--until-idle", "--max-attempts", "2"}), {}, relay_env());
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(text(dir.db(), "SELECT status FROM metrix_outbox") == "dead");
    CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status IS NULL") == 2);
  }
  make_outbox(dir.db(), 1);  // row 2
  {
    RawServer cut([](int fd) { write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"sta"); });
    auto r = run(relay_args(dir.db(), cut.url(), {"--until-idle", "--max-attempts", "1"}), {}, relay_env());
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(text(dir.db(), "SELECT status || ' ' || last_error FROM metrix_outbox WHERE id = 2") ==
          "dead connection closed mid-answer (gave up after 1 attempts)");
  }
}

TEST_CASE("an absurd Retry-After is capped by --backoff-max") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  RawServer server([](int fd) {
    write_all(fd, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999999999999999\r\nContent-Length: 0\r\n\r\n");
  });
  std::int64_t before = metrix::now_ms();
  auto relay = Process::start(relay_args(dir.db(), server.url(), {"--backoff-max", "30s"}), relay_env());
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server.requests() < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(300ms);
  relay.kill(SIGTERM);
  REQUIRE(relay.wait(10s) == 0);
  CHECK(server.requests() == 1);
  CHECK(text(dir.db(), "SELECT status || ' ' || last_error FROM metrix_outbox") == "pending http 429");
  auto next = scalar(dir.db(), "SELECT next_attempt_at FROM metrix_outbox");
  CHECK(next >= before + 30000);
  CHECK(next <= metrix::now_ms() + 30000);
}
