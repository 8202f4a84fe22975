// Connections: counting the TCP connections fake-metrix accepts, and reaching
// the socket of one of them, which cpp-httplib 0.11.4 does not expose.
//
// How connections are counted. httplib's accept loop (Server::listen_internal)
// hands every accepted socket to the server's TaskQueue as exactly one task,
// which serves that connection's keep-alive requests (and, for SSLServer, its
// TLS handshake) until it closes. CountingTaskQueue is installed through the
// public `Server::new_task_queue` hook and counts enqueue() calls: the count
// is exact, for http and https, and one task's lifetime is one connection's.
// (httplib's `set_socket_options` callback cannot be used for this: it only
// runs for the listening socket.)
//
// How a connection's socket is found. Handlers get the peer and local
// address of their connection but not its descriptor, so find_connection_socket
// searches this process's descriptors (/proc/self/fd) for the TCP socket with
// that address pair. The 4-tuple is unique while the handler runs, because the
// connection cannot close under it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <httplib.h>

namespace fake_metrix {

struct ConnectionCounts {
  std::atomic<uint64_t> accepted{0};  // TCP connections accepted since start
  std::atomic<uint64_t> open{0};      // accepted and not yet closed (or queued for a thread)
  std::atomic<uint64_t> max_open{0};
};

// A thread pool of `threads` workers; each worker serves one connection at a
// time, so `threads` bounds the connections served at once (more wait in the
// queue). Owned by httplib once returned from new_task_queue.
class CountingTaskQueue : public httplib::TaskQueue {
 public:
  CountingTaskQueue(size_t threads, ConnectionCounts& counts) : pool_(threads), counts_(counts) {}
  void enqueue(std::function<void()> serve_connection) override;
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  ConnectionCounts& counts_;
};

// The descriptor of the connection `request` arrived on, if found. Callers may
// shutdown(2) it but must never close(2) it: httplib closes it.
std::optional<int> find_connection_socket(const httplib::Request& request);

// Half-closes (SHUT_RD) every accepted connection to `local_port`, so that
// workers waiting for a next keep-alive request see end-of-file at once and
// requests being answered still get their answer. Used at shutdown.
void half_close_connections(int local_port);

// Raises atomically `maximum` to at least `value`.
void raise_to(std::atomic<uint64_t>& maximum, uint64_t value);

}  // namespace fake_metrix
