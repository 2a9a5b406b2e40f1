#pragma once
// af-server's HTTP front: cpp-httplib's request processing behind connection handling of our own.
//
// Debian's cpp-httplib 0.11 reads a request head with no bound on its lines or on the time it
// takes, serves connections from a fixed pool (so slow clients hold every worker), sets
// SO_REUSEPORT on the listening socket and treats a half-closed client as gone. Its request
// parsing, routing and response writing are fine, and Server::process_request is protected, so
// GuardedServer keeps those and replaces the connection loop (the private virtual
// process_and_close_socket): each admitted connection gets its own thread; the head is read here
// under a deadline and a size and line budget before httplib sees it; the body is read through a
// Stream with a deadline. See docs/SERVER.md ("Limits").
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "http_guard.hpp"

namespace af::server {

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(const FrontLimits& limits);
  ~GuardedServer() override;

  // For handlers: whether the current request's body ran past --request-timeout, and a way to
  // close the connection after the response (when a body was left unread).
  static bool request_timed_out();
  static void close_after_response();

  const FrontLimits& limits() const { return limits_; }

  // Called with the status of each answer the front gives before httplib sees a request (408,
  // 429, 431, 503), for the metrics.
  std::function<void(int status)> on_refused;

 private:
  bool process_and_close_socket(socket_t sock) override;
  // A connection, by id. `waiting`: it is waiting for a request head (idle keep-alive, or a
  // client still sending its head); such connections may be evicted for new ones.
  struct Connection {
    int fd = -1;
    std::string client;
    bool waiting = true;
    bool evicted = false;
    std::chrono::steady_clock::time_point waiting_since;
  };

  void serve_connection(int fd, uint64_t id);
  int admit(int fd, const std::string& client, uint64_t& id);  // 0, or the status to refuse with
  bool evict_oldest_waiting(const std::string* client);
  void refuse(int fd, int status);
  void set_waiting(uint64_t id);
  bool stop_waiting(uint64_t id);  // false when the connection was evicted meanwhile
  void release(uint64_t id);
  void wait_for_connections();

  FrontLimits limits_;
  std::mutex mutex_;
  std::condition_variable idle_;
  int open_ = 0;
  std::map<std::string, int> per_client_;
  std::map<uint64_t, Connection> connections_;
  uint64_t next_id_ = 0;
};

struct ServerOptions;

// The body of a POST to a generating endpoint, at most options.max_body bytes after chunked and
// Content-Encoding decoding (413 beyond, 408 past --request-timeout, 415 for an unknown encoding,
// 400 for broken framing). Throws ApiError; on error the connection closes after the answer.
std::string read_body(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader, const ServerOptions& options);

// For the pre-routing handler: throws ApiError (404 for an unknown URL, 400 otherwise) when a
// request that takes no body declares one, so that httplib never reads it.
void refuse_unexpected_body(const httplib::Request& req);

}  // namespace af::server
