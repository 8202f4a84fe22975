#include "tools/fake-metrix/connections.h"

#include <charconv>
#include <cstdlib>
#include <memory>
#include <string_view>

#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>

namespace fake_metrix {
namespace {

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};
using Dir = std::unique_ptr<DIR, DirCloser>;

struct SocketAddress {
  std::string host;
  int port = -1;
};

// The numeric host and port of a socket address, formatted the way httplib
// formats Request::remote_addr (getnameinfo with NI_NUMERICHOST).
std::optional<SocketAddress> endpoint_of(const sockaddr_storage& address, socklen_t length) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return std::nullopt;
  }
  SocketAddress endpoint{host, -1};
  std::string_view port_text(port);
  std::from_chars(port_text.data(), port_text.data() + port_text.size(), endpoint.port);
  return endpoint;
}

std::optional<SocketAddress> local_endpoint(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return std::nullopt;
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6) return std::nullopt;
  return endpoint_of(address, length);
}

std::optional<SocketAddress> peer_endpoint(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return std::nullopt;
  return endpoint_of(address, length);
}

// Calls `visit(fd)` for every open descriptor of this process; stops when it
// returns false.
void for_each_descriptor(const std::function<bool(int)>& visit) {
  Dir dir(opendir("/proc/self/fd"));
  if (!dir) return;
  int own = dirfd(dir.get());
  while (dirent* entry = readdir(dir.get())) {
    std::string_view name(entry->d_name);
    int fd = -1;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
    if (ec != std::errc() || end != name.data() + name.size() || fd == own) continue;
    if (!visit(fd)) return;
  }
}

}  // namespace

void raise_to(std::atomic<uint64_t>& maximum, uint64_t value) {
  uint64_t seen = maximum.load();
  while (seen < value && !maximum.compare_exchange_weak(seen, value)) {
  }
}

void CountingTaskQueue::enqueue(std::function<void()> serve_connection) {
  counts_.accepted.fetch_add(1);
  raise_to(counts_.max_open, counts_.open.fetch_add(1) + 1);
  pool_.enqueue([serve = std::move(serve_connection), &counts = counts_] {
    serve();
    counts.open.fetch_sub(1);
  });
}

std::optional<int> find_connection_socket(const httplib::Request& request) {
  std::optional<int> found;
  for_each_descriptor([&](int fd) {
    std::optional<SocketAddress> local = local_endpoint(fd);
    if (!local || local->port != request.local_port) return true;
    std::optional<SocketAddress> peer = peer_endpoint(fd);
    if (!peer || peer->port != request.remote_port || peer->host != request.remote_addr) return true;
    found = fd;
    return false;
  });
  return found;
}

void half_close_connections(int local_port) {
  for_each_descriptor([&](int fd) {
    std::optional<SocketAddress> local = local_endpoint(fd);
    // The listening socket has no peer; only accepted connections do.
    if (local && local->port == local_port && peer_endpoint(fd)) shutdown(fd, SHUT_RD);
    return true;
  });
}

}  // namespace fake_metrix
