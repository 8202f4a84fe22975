// The relay as a systemd service, without systemd: the test binds the notify socket itself and
// reads what the built relay tells the service manager (READY, STATUS, WATCHDOG, RELOADING,
// STOPPING); SIGHUP reloads the config file; --log-format json and a journal stream on stderr.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// The service manager's end of sd_notify(3): a datagram socket the relay sends its states to.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : path_(path.string()) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    std::copy(path_.begin(), path_.end(), addr.sun_path);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() { close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // The next message, or nullopt after `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buffer[4096];
    ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) return std::nullopt;
    std::string message(buffer, static_cast<size_t>(n));
    seen_.push_back(message);
    return message;
  }

  // Reads messages until one contains `needle`; false after `timeout`.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      auto m = next(left);
      if (m && m->find(needle) != std::string::npos) return true;
    }
  }

  // Every message read so far, in order.
  const std::vector<std::string>& seen() const { return seen_; }
  std::string all() const {
    std::string text;
    for (const auto& m : seen_) text += m + "\n---\n";
    return text;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> seen_;
};

bool wait_for_sent(const std::string& db, std::int64_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_status(db, "sent") >= n) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::map<std::string, std::string> service_env(const NotifySocket& notify, const std::string& watchdog_usec) {
  auto env = relay_env();
  env["NOTIFY_SOCKET"] = notify.path();
  env["WATCHDOG_USEC"] = watchdog_usec;
  return env;
}

// "2026-12-05T15:38:28.412Z": RFC 3339 in UTC with milliseconds, as the log writes times. (Not
// std::regex: GCC 12 warns inside it under the sanitizers.)
bool is_utc_ms_time(std::string_view text) {
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (text.size() != kShape.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (kShape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(text[i])) : text[i] != kShape[i]) return false;
  }
  return true;
}

size_t count(const std::vector<std::string>& messages, const std::string& needle) {
  return static_cast<size_t>(std::count_if(messages.begin(), messages.end(),
                                           [&](const std::string& m) { return m.find(needle) != std::string::npos; }));
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

}  // namespace

TEST_CASE("under a notify socket the relay says READY, pings the watchdog from its loop, reports STATUS, reloads and "
          "says STOPPING") {
  TempDir dir;
  make_outbox(dir.db(), 200);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  NotifySocket notify(dir.file("notify.sock"));
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--progress-interval", "200ms"}),
                              service_env(notify, "400000"));

  auto first = notify.next(30s);
  REQUIRE_MESSAGE(first, relay.err());
  // The first thing said is READY=1, with a status.
  CHECK(first->find("READY=1") != std::string::npos);
  CHECK(first->find("STATUS=sent 0, backlog 200") != std::string::npos);

  // STATUS follows the progress line; the watchdog hears from the loop meanwhile.
  CHECK_MESSAGE(notify.wait_for("STATUS=sent 200, backlog 0", 60s), (notify.all() + relay.err()));
  CHECK(notify.wait_for("WATCHDOG=1", 10s));
  CHECK(notify.wait_for("WATCHDOG=1", 10s));
  CHECK(count(notify.seen(), "WATCHDOG=1") >= 2);

  // SIGHUP: RELOADING=1, then READY=1 again.
  relay.kill(SIGHUP);
  CHECK_MESSAGE(notify.wait_for("RELOADING=1", 10s), notify.all());
  CHECK_MESSAGE(notify.wait_for("READY=1", 10s), notify.all());
  const auto& seen = notify.seen();
  auto reloading = std::find_if(seen.begin(), seen.end(), [](auto& m) { return m.find("RELOADING=1") != std::string::npos; });
  REQUIRE(reloading != seen.end());
  CHECK(reloading->find("MONOTONIC_USEC=") != std::string::npos);

  relay.kill(SIGTERM);
  CHECK_MESSAGE(notify.wait_for("STOPPING=1", 20s), notify.all());
  CHECK(relay.wait(30s) == 0);
  CHECK(relay.err().find(kDevKey) == std::string::npos);
  CHECK(notify.all().find(kDevKey) == std::string::npos);
}

TEST_CASE("the relay never says READY when its database cannot be used") {
  TempDir dir;
  {
    auto db = metrix::Database::open(dir.db(), {.create = true});  // no schema
    REQUIRE(db);
  }
  NotifySocket notify(dir.file("notify.sock"));
  auto r = run(relay_args(dir.db(), "http://127.0.0.1:9"), {}, service_env(notify, "400000"), 30s);
  CHECK(r.exit_code == 1);
  while (notify.next(100ms)) {
  }
  CHECK_MESSAGE(count(notify.seen(), "READY=1") == 0, notify.all());
}

TEST_CASE("without a notify socket the relay runs as before and sends nothing") {
  TempDir dir;
  make_outbox(dir.db(), 20);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto env = relay_env();
  env["WATCHDOG_USEC"] = "400000";  // no NOTIFY_SOCKET: ignored
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle"}), {}, env, 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 20);
}

TEST_CASE("a producer holding the write lock does not starve the watchdog while the relay's writes wait") {
  TempDir dir;
  make_outbox(dir.db(), 50);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  NotifySocket notify(dir.file("notify.sock"));
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--progress-interval", "200ms", "--busy-timeout", "30s"}),
                              service_env(notify, "400000"));
  REQUIRE(notify.wait_for("READY=1", 30s));
  // Read the notify socket meanwhile, as a service manager does: an unread socket fills (ten
  // datagrams by default) and then sd_notify() blocks the relay.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (count_status(dir.db(), "sent") < 50 && std::chrono::steady_clock::now() < deadline) notify.next(50ms);
  REQUIRE_MESSAGE(count_status(dir.db(), "sent") == 50, relay.err());

  // A producer takes the write lock and holds it: the relay's write rounds (outcomes, the
  // heartbeat, claims) wait for it, up to --busy-timeout.
  auto producer = metrix::Database::open(dir.db());
  REQUIRE(producer);
  REQUIRE(producer->exec("BEGIN IMMEDIATE"));
  while (notify.next(0ms)) {
  }
  const size_t before = count(notify.seen(), "WATCHDOG=1");
  const auto held_until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < held_until) notify.next(100ms);
  const size_t during = count(notify.seen(), "WATCHDOG=1") - before;
  REQUIRE(producer->exec("ROLLBACK"));
  // At 400 ms a ping is due every 200 ms: a loop stalled by the lock would send none.
  CHECK_MESSAGE(during >= 3, (notify.all() + relay.err()));

  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
}

TEST_CASE("SIGHUP with a config that adds an app starts its rows flowing; a broken one is refused and the old one kept") {
  TempDir dir;
  make_outbox(dir.db(), 30, "taqsq", std::string("app1"));
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    metrix::Producer producer(db->handle());
    for (int i = 1; i <= 20; ++i) REQUIRE(producer.enqueue(valid_payload(100 + i), {.app_id = std::string("app2")}));
  }
  auto fake = FakeMetrix::start(dir, {"--app", "app1", "--app", "app2"},
                                {{"FAKE_METRIX_KEYS", "app1=" + kDevKey + ",app2=second-key-8d1e"}});
  const auto config = dir.file("relay.toml");
  const std::string base = "db = \"" + dir.db() + "\"\nendpoint = \"" + fake.url() + "\"\nprogress-interval = \"200ms\"\n";
  write_file(config, base + app_key_config(dir, "app1", kDevKey));
  auto relay = Process::start({relay_binary(), "run", "--config", config.string(), "--timeout", "30s", "--lease", "90s",
                               "--backoff-base", "10ms", "--backoff-max", "100ms"},
                              {});
  REQUIRE_MESSAGE(wait_for_sent(dir.db(), 30, 60s), relay.err());
  REQUIRE(relay.wait_for_err("no dev key for app app2", 30s));
  CHECK(count_status(dir.db(), "pending") == 20);

  // A config file that does not parse: refused, and the relay goes on with the old one.
  write_file(config, base + "concurrency = \n");
  relay.kill(SIGHUP);
  CHECK_MESSAGE(relay.wait_for_err("reload refused, the configuration in force stays", 30s), relay.err());
  // A config that would move the relay to another database: refused too.
  write_file(config, "db = \"" + dir.file("other.db").string() + "\"\n" + app_key_config(dir, "app1", kDevKey));
  relay.kill(SIGHUP);
  CHECK_MESSAGE(relay.wait_for_err("db cannot change on reload", 30s), relay.err());
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    metrix::Producer producer(db->handle());
    for (int i = 1; i <= 10; ++i) REQUIRE(producer.enqueue(valid_payload(200 + i), {.app_id = std::string("app1")}));
  }
  CHECK_MESSAGE(wait_for_sent(dir.db(), 40, 60s), relay.err());
  CHECK(relay.running());

  // A good config that adds app2 with its key: its rows flow without a restart.
  write_file(config, base + app_key_config(dir, "app1", kDevKey) + app_key_config(dir, "app2", "second-key-8d1e"));
  relay.kill(SIGHUP);
  CHECK_MESSAGE(relay.wait_for_err("app app2: added", 30s), relay.err());
  CHECK_MESSAGE(wait_for_sent(dir.db(), 60, 60s), relay.err());
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE app_id = 'app2' AND status = 'sent'") == 20);

  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
  CHECK(relay.err().find(kDevKey) == std::string::npos);
  CHECK(relay.err().find("second-key-8d1e") == std::string::npos);
}

TEST_CASE("SIGHUP with a rotated dev key sends the next request with the new key") {
  TempDir dir;
  make_outbox(dir.db(), 20, "taqsq", std::string("app1"));
  // Metrix knows only the new key: the old one is refused with a 403, which pauses the app.
  auto fake = FakeMetrix::start(dir, {"--app", "app1"}, {{"FAKE_METRIX_KEYS", "app1=rotated-key-77c0"}});
  const auto config = dir.file("relay.toml");
  const std::string base = "db = \"" + dir.db() + "\"\nendpoint = \"" + fake.url() +
                           "\"\npause-interval = \"100ms\"\npause-max = \"200ms\"\n";
  write_file(config, base + app_key_config(dir, "app1", kDevKey));
  auto relay = Process::start({relay_binary(), "run", "--config", config.string()}, {});
  REQUIRE_MESSAGE(relay.wait_for_err("app app1 paused: Metrix answered 403", 30s), relay.err());
  CHECK(count_status(dir.db(), "sent") == 0);

  // The key file is rewritten in place, as an operator rotating a key would.
  app_key_config(dir, "app1", "rotated-key-77c0");
  relay.kill(SIGHUP);
  CHECK_MESSAGE(relay.wait_for_err("app app1: new dev key", 30s), relay.err());
  CHECK_MESSAGE(wait_for_sent(dir.db(), 20, 60s), relay.err());
  CHECK(relay.wait_for_err("app app1 resumed", 30s));

  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
  CHECK(relay.err().find("rotated-key-77c0") == std::string::npos);
  CHECK(relay.err().find(kDevKey) == std::string::npos);
}

TEST_CASE("SIGHUP with a new progress interval writes it to the heartbeat, so status judges the relay by it") {
  TempDir dir;
  make_outbox(dir.db(), 5);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  const auto config = dir.file("relay.toml");
  const std::string base = "db = \"" + dir.db() + "\"\nendpoint = \"" + fake.url() + "\"\napp-id = \"app1\"\n" +
                           app_key_config(dir, "app1", kDevKey);
  write_file(config, "progress-interval = \"200ms\"\n" + base);
  auto relay = Process::start({relay_binary(), "run", "--config", config.string()}, {});
  auto heartbeat_interval = [&] {
    return scalar(dir.db(), "SELECT coalesce(max(interval_ms), 0) FROM metrix_relay_heartbeat");
  };
  REQUIRE_MESSAGE(wait_for_sent(dir.db(), 5, 30s), relay.err());
  CHECK(heartbeat_interval() == 200);

  // A relay beating every 2 s must not be judged by the 200 ms it started with (three missed
  // beats make it stale for `status` and `check --repair`).
  write_file(config, "progress-interval = \"2s\"\n" + base);
  relay.kill(SIGHUP);
  REQUIRE(relay.wait_for_err("reloaded:", 30s));
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (heartbeat_interval() != 2000 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  CHECK_MESSAGE(heartbeat_interval() == 2000, relay.err());

  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
}

TEST_CASE("--dev-key-file works with the app named in the config file") {
  TempDir dir;
  make_outbox(dir.db(), 10);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  const auto key = dir.file("dev-key");
  write_file(key, kDevKey + "\n");
  std::filesystem::permissions(key, std::filesystem::perms::owner_read);
  const auto config = dir.file("relay.toml");
  write_file(config, "db = \"" + dir.db() + "\"\nendpoint = \"" + fake.url() + "\"\napp-id = \"app1\"\n");
  auto r = run({relay_binary(), "run", "--config", config.string(), "--dev-key-file", key.string(), "--until-idle"}, {},
               {}, 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 10);
}

TEST_CASE("--log-format json writes one JSON object a line with time, level, msg and the row's fields") {
  TempDir dir;
  make_outbox(dir.db(), 100);
  // About 30% of the answers are 5xx: those rows are retried (debug records with the row's fields).
  auto fake = FakeMetrix::start(dir, fake_args({"--error-rate", "0.3", "--seed", "11"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--log-format", "json", "--log-level", "debug"}), {},
               relay_env(), 120s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find(kDevKey) == std::string::npos);
  std::istringstream lines(r.err);
  std::string line;
  int records = 0, retries = 0;
  while (std::getline(lines, line)) {
    auto record = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(record.is_object(), line);
    ++records;
    CHECK(is_utc_ms_time(record["time"].get<std::string>()));
    const auto level = record["level"].get<std::string>();
    CHECK((level == "debug" || level == "info" || level == "warning" || level == "error"));
    CHECK(!record["msg"].get<std::string>().empty());
    if (record.value("outcome", "") == "pending") {
      ++retries;
      CHECK(record["app_id"] == "app1");
      CHECK(record["row_id"].get<std::int64_t>() >= 1);
      CHECK(record["http_status"].get<int>() >= 500);
      CHECK(record["attempt"].get<int>() >= 1);
      CHECK(record.contains("error"));
      CHECK(level == "debug");
    }
  }
  CHECK(records > 2);
  CHECK(retries > 0);
  CHECK(count_status(dir.db(), "sent") == 100);

  // At --log-level warning the same run says nothing but warnings and errors.
  auto quiet = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--log-format", "json", "--log-level", "warning"}),
                   {}, relay_env(), 60s);
  CHECK(quiet.exit_code == 0);
  CHECK_MESSAGE(quiet.err.empty(), quiet.err);
}

TEST_CASE("with stderr on the journal the text lines carry a priority and no timestamp of their own") {
  TempDir dir;
  make_outbox(dir.db(), 5);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  // systemd names the stream it connects stderr to in $JOURNAL_STREAM ("device:inode"); here a
  // shell names the file Process gives the relay as stderr, then runs the relay on it.
  std::vector<std::string> argv = {"/bin/sh", "-c",
                                   "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" \"$@\""};
  for (const auto& arg : relay_args(dir.db(), fake.url(), {"--until-idle"})) argv.push_back(arg);
  auto relay = Process::start(argv, relay_env());
  REQUIRE_MESSAGE(relay.wait(60s) == 0, relay.err());
  const std::string err = relay.err();
  CHECK_MESSAGE(err.rfind("<6>relaying ", 0) == 0, err);
  CHECK(err.find("metrix-relay: ") == std::string::npos);  // no timestamp, no name: the journal adds both
  CHECK(err.find("\n<6>finished: ") != std::string::npos);

  // Not the journal (another stream's numbers): the usual timestamped lines.
  auto other = run(relay_args(dir.db(), fake.url(), {"--until-idle"}), {},
                   {{"METRIX_DEV_KEY", kDevKey}, {"JOURNAL_STREAM", "1:1"}}, 60s);
  CHECK(other.exit_code == 0);
  CHECK(is_utc_ms_time(other.err.substr(0, 24)));
  CHECK(other.err.substr(24, 24) == " metrix-relay: relaying ");
}

TEST_CASE("--log-format journal where there is no journal writes the text lines to stderr, losing nothing") {
  if (std::filesystem::exists("/run/systemd/journal/socket")) {
    MESSAGE("skipped: this machine has a journal, which would take the records");
    return;
  }
  TempDir dir;
  make_outbox(dir.db(), 5);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--log-format", "journal"}), {}, relay_env(), 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("metrix-relay: relaying ") != std::string::npos);
  CHECK(r.err.find("metrix-relay: finished: sent 5") != std::string::npos);
}

TEST_CASE("an unknown log format or level is refused with exit 2, naming the setting") {
  TempDir dir;
  auto bad_flag = run({relay_binary(), "run", "--db", dir.db(), "--log-format", "xml"}, {}, {}, 30s);
  CHECK(bad_flag.exit_code == 2);
  CHECK(bad_flag.err.find("--log-format must be text, json or journal") != std::string::npos);
  write_file(dir.file("relay.toml"), "log-level = \"loud\"\n");
  auto bad_key = run({relay_binary(), "run", "--db", dir.db(), "--config", dir.file("relay.toml").string()}, {}, {}, 30s);
  CHECK(bad_key.exit_code == 2);
  CHECK(bad_key.err.find("'log-level' must be \"debug\", \"info\", \"warning\" or \"error\"") != std::string::npos);
}
