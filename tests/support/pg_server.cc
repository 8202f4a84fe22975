#include "tests/support/pg_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

namespace metrix::test {

namespace {

// A port nobody listens on now (the kernel's pick for an ephemeral bind).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("PgServer: no free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

void must(const RunResult& r, const std::string& what) {
  if (r.exit_code != 0) throw std::runtime_error(fmt::format("PgServer: {} failed ({}):\n{}{}", what, r.exit_code, r.out, r.err));
}

}  // namespace

std::string PgServer::settings_text() const {
  std::string out;
  for (const auto& s : settings_) out += " -c " + s;
  return out;
}

std::string PgServer::bin(const std::string& program) const {
  const char* dir = std::getenv("METRIX_PG_BINDIR");
  return fmt::format("{}/{}", dir && *dir ? dir : "/usr/lib/postgresql/15/bin", program);
}

std::vector<std::string> PgServer::as_owner(std::vector<std::string> argv) const {
  if (::geteuid() != 0) return argv;
  argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
  return argv;
}

PgServer::PgServer(const std::vector<std::string>& settings) : settings_(settings) {
  if (!std::filesystem::exists(bin("initdb"))) {
    throw std::runtime_error(fmt::format("PgServer: {} not found: install postgresql-15 (./scripts/install-deps)", bin("initdb")));
  }
  if (::geteuid() == 0) {
    const passwd* owner = ::getpwnam("postgres");
    if (!owner) throw std::runtime_error("PgServer: running as root needs the 'postgres' user (package postgresql-common)");
    if (::chown(dir_.path().c_str(), owner->pw_uid, owner->pw_gid) != 0) throw std::runtime_error("PgServer: chown failed");
  }
  data_ = (dir_.path() / "data").string();
  must(run(as_owner({bin("initdb"), "-D", data_, "-U", "metrix", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                     "--no-sync"})),
       "initdb");
  start();
}

PgServer::~PgServer() {
  if (running_) (void)run(as_owner({bin("pg_ctl"), "-D", data_, "-m", "immediate", "-w", "stop"}));
}

void PgServer::start() {
  for (int tries = 0;; ++tries) {
    if (port_ == 0) port_ = free_port();
    const std::string options = fmt::format("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", port_, dir_.path().string());
    auto r = run(as_owner({bin("pg_ctl"), "-D", data_, "-o", options + settings_text(), "-l", (dir_.path() / "server.log").string(), "-w",
                           "start"}));
    if (r.exit_code == 0) break;
    if (tries == 3) must(r, "pg_ctl start");
    port_ = 0;  // taken meanwhile: another port
  }
  running_ = true;
}

void PgServer::stop() {
  if (!running_) return;
  must(run(as_owner({bin("pg_ctl"), "-D", data_, "-m", "fast", "-w", "stop"})), "pg_ctl stop");
  running_ = false;
}

std::string PgServer::uri(const std::string& database) const {
  return fmt::format("postgresql://metrix@127.0.0.1:{}/{}", port_, database);
}

void PgServer::create_database(const std::string& name) { psql(fmt::format("CREATE DATABASE {}", name)); }

std::string PgServer::psql(const std::string& sql, const std::string& database) const {
  auto r = run({"/usr/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri(database), "-c", sql});
  must(r, "psql -c " + sql);
  return r.out;
}

}  // namespace metrix::test
