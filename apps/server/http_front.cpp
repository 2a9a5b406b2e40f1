#include "http_front.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <system_error>
#include <thread>

#include "api.hpp"
#include "server.hpp"

namespace af::server {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string format_seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", s);
  return text;
}

int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// poll() on one descriptor, retried when a signal interrupts it. Returns the revents (0: timeout,
// -1: error).
int wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const int r = poll(&p, 1, timeout_ms);
    if (r > 0) return p.revents;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
    timeout_ms = millis_until(deadline);
  }
}

std::string ip_of(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, text, sizeof text);
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, text, sizeof text);
  }
  return text;
}

int port_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  }
  return -1;
}

void endpoint_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ip = r == 0 ? ip_of(addr) : std::string();
  port = r == 0 ? port_of(addr) : -1;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 408:
      return "Request Timeout";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// Answers a request the front refuses before httplib sees it, in OpenAI's error shape. Waits at
// most `timeout_ms` for the socket to take the bytes (0 on the accept thread, which must not
// block).
void send_error(int fd, const ApiError& e, int timeout_ms) {
  const std::string body =
      error_body(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out =
      "HTTP/1.1 " + std::to_string(e.status) + " " + reason_phrase(e.status) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n";
  if (e.status == 429 || e.status == 503) out += "Retry-After: 1\r\n";
  out += "\r\n" + body;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (size_t sent = 0; sent < out.size();) {
    const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR) && Clock::now() < deadline) {
      wait_for(fd, POLLOUT, millis_until(deadline));
    } else {
      return;
    }
  }
}

// Closes after an error answer without resetting the connection: closing a socket with unread
// input sends RST, which can destroy the answer before the client reads it. So stop writing,
// then read and drop what the client still sends, for at most `linger_ms`.
void close_gracefully(int fd, int linger_ms) {
  shutdown(fd, SHUT_WR);
  const auto deadline = Clock::now() + std::chrono::milliseconds(linger_ms);
  char sink[16384];
  for (;;) {
    const ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    if (n < 0 && (Clock::now() >= deadline || wait_for(fd, POLLIN, millis_until(deadline)) <= 0)) {
      break;
    }
  }
  close(fd);
}

enum class HeadOutcome { kReady, kIdle, kTimeout, kTooLarge };

// Reads until `buffer` holds a whole request head. The first request of a connection must be
// complete header_timeout after the connection was accepted; a later one header_timeout after
// its first byte, which must come within keep_alive_timeout. kIdle: the client closed or sent
// nothing (close quietly).
HeadOutcome read_head(int fd, std::string& buffer, bool first, const FrontLimits& limits,
                      const std::function<bool()>& stopping, Clock::time_point& started_at) {
  HeadScanner scanner(limits.head);
  started_at = Clock::now();
  bool started = first || !buffer.empty();
  Clock::time_point deadline =
      started_at + seconds(started ? limits.header_timeout : limits.keep_alive_timeout);
  char chunk[16384];
  for (;;) {
    const HeadStatus status = scanner.scan(buffer);
    if (status == HeadStatus::kComplete) {
      buffer.erase(0, scanner.skipped());
      return HeadOutcome::kReady;
    }
    if (status == HeadStatus::kTooLarge) return HeadOutcome::kTooLarge;
    if (stopping()) return HeadOutcome::kIdle;
    if (Clock::now() >= deadline) {
      return buffer.empty() ? HeadOutcome::kIdle : HeadOutcome::kTimeout;
    }
    // Wake up now and then to notice a server shutdown.
    const int revents = wait_for(fd, POLLIN, std::min(millis_until(deadline), 250));
    if (revents == 0) continue;
    if (revents < 0) return HeadOutcome::kIdle;
    const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return HeadOutcome::kIdle;
    if (!started) {
      started = true;
      started_at = Clock::now();
      deadline = started_at + seconds(limits.header_timeout);
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

// Runs httplib's accept loop's tasks right away on the accept thread: process_and_close_socket
// only admits a connection and starts its thread.
class InlineQueue : public httplib::TaskQueue {
 public:
  explicit InlineQueue(std::function<void()> on_shutdown) : on_shutdown_(std::move(on_shutdown)) {}
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override { on_shutdown_(); }

 private:
  std::function<void()> on_shutdown_;
};

// The socket as httplib sees it for one request: first the bytes the front already read (the
// head, perhaps more), then the socket, with a deadline for the whole request. A half-closed
// client (it shut down its sending side) stays writable, so it still gets its answer.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, std::string pending, Clock::time_point read_deadline, int write_ms,
                   const std::function<bool()>& stopping)
      : fd_(fd),
        pending_(std::move(pending)),
        read_deadline_(read_deadline),
        write_ms_(write_ms),
        stopping_(stopping) {}

  bool is_readable() const override {
    return offset_ < pending_.size() || wait_for(fd_, POLLIN, millis_until(read_deadline_)) > 0;
  }

  bool is_writable() const override {
    const int revents = wait_for(fd_, POLLOUT, write_ms_);
    return revents > 0 && !(revents & (POLLERR | POLLHUP | POLLNVAL));
  }

  ssize_t read(char* ptr, size_t size) override {
    if (offset_ < pending_.size()) {
      const size_t n = std::min(size, pending_.size() - offset_);
      std::memcpy(ptr, pending_.data() + offset_, n);
      offset_ += n;
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      // In slices, so that a slow body does not hold up a server shutdown.
      const int left = millis_until(read_deadline_);
      const int revents = wait_for(fd_, POLLIN, std::min(left, 250));
      if (revents == 0 && left > 250 && !stopping_()) continue;
      if (revents == 0) timed_out_ = true;
      if (revents <= 0) return -1;
      const ssize_t n = recv(fd_, ptr, size, 0);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN)) return n;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (wait_for(fd_, POLLOUT, write_ms_) <= 0) return -1;
      const ssize_t n = send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN)) return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    endpoint_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    endpoint_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

  // Bytes read from the socket that httplib did not consume: the start of the next request.
  std::string take_unread() { return pending_.substr(std::min(offset_, pending_.size())); }

  bool timed_out() const { return timed_out_; }
  bool close_requested = false;

 private:
  int fd_;
  std::string pending_;
  size_t offset_ = 0;
  Clock::time_point read_deadline_;
  int write_ms_;
  const std::function<bool()>& stopping_;
  bool timed_out_ = false;
};

// The stream of the request this thread is serving (each connection has its own thread).
thread_local ConnectionStream* t_stream = nullptr;

}  // namespace

GuardedServer::GuardedServer(const FrontLimits& limits) : limits_(limits) {
  new_task_queue = [this] { return new InlineQueue([this] { wait_for_connections(); }); };
  // httplib sets SO_REUSEPORT too, which lets a second server bind the same port and take half
  // of the connections. SO_REUSEADDR alone only allows rebinding over TIME_WAIT connections.
  set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
}

GuardedServer::~GuardedServer() { wait_for_connections(); }

bool GuardedServer::request_timed_out() { return t_stream && t_stream->timed_out(); }

void GuardedServer::close_after_response() {
  if (t_stream) t_stream->close_requested = true;
}

// Over a cap, a new connection takes the place of the one that has waited longest for a request
// head (an idle keep-alive connection, or a slow client), if one has waited kEvictAfter: those
// are what slow-header attacks hold, and closing them loses no work. Only when every connection
// is busy with a request is the new one refused.
int GuardedServer::admit(int fd, const std::string& client, uint64_t& id) {
  std::lock_guard lock(mutex_);
  if (open_ >= limits_.max_connections && !evict_oldest_waiting(nullptr)) return 503;
  if (per_client_[client] >= limits_.max_connections_per_client && !evict_oldest_waiting(&client)) {
    return 429;
  }
  ++per_client_[client];
  ++open_;
  id = next_id_++;
  connections_[id] = Connection{fd, client, true, false, Clock::now()};
  return 0;
}

bool GuardedServer::evict_oldest_waiting(const std::string* client) {
  constexpr auto kEvictAfter = std::chrono::seconds(1);
  const auto now = Clock::now();
  Connection* oldest = nullptr;
  for (auto& [id, c] : connections_) {
    if (!c.waiting || c.evicted || (client && c.client != *client)) continue;
    if (now - c.waiting_since < kEvictAfter) continue;
    if (!oldest || c.waiting_since < oldest->waiting_since) oldest = &c;
  }
  if (!oldest) return false;
  // Its thread is in read_head (waiting is only cleared under the mutex, before the descriptor
  // is closed), so the descriptor is still that connection's; shutdown wakes the thread.
  shutdown(oldest->fd, SHUT_RDWR);
  oldest->evicted = true;
  --open_;
  if (--per_client_[oldest->client] == 0) per_client_.erase(oldest->client);
  return true;
}

void GuardedServer::set_waiting(uint64_t id) {
  std::lock_guard lock(mutex_);
  Connection& c = connections_.at(id);
  c.waiting = true;
  c.waiting_since = Clock::now();
}

bool GuardedServer::stop_waiting(uint64_t id) {
  std::lock_guard lock(mutex_);
  Connection& c = connections_.at(id);
  c.waiting = false;
  return !c.evicted;
}

// Answers a connection that admit() refused, without blocking the accept thread.
void GuardedServer::refuse(int fd, int status) {
  const ApiError error =
      status == 429
          ? ApiError(429,
                     "This client has " + std::to_string(limits_.max_connections_per_client) +
                         " open connections, the limit per client "
                         "(--max-connections-per-client). Reuse or close connections.",
                     "rate_limit_error", "", "too_many_connections")
          : ApiError(503,
                     "The server has " + std::to_string(limits_.max_connections) +
                         " open connections, its limit (--max-connections). Retry later.",
                     "server_error", "", "too_many_connections");
  send_error(fd, error, 0);
  close_gracefully(fd, 0);
  if (on_refused) on_refused(status);
}

void GuardedServer::release(uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto it = connections_.find(id);
  if (!it->second.evicted) {
    --open_;
    if (--per_client_[it->second.client] == 0) per_client_.erase(it->second.client);
  }
  connections_.erase(it);
  // Under the lock: once the last connection is released the server may be destroyed, so this
  // thread must not touch it after unlocking.
  idle_.notify_all();
}

void GuardedServer::wait_for_connections() {
  std::unique_lock lock(mutex_);
  if (!idle_.wait_for(lock, std::chrono::seconds(60), [this] { return open_ == 0; })) {
    std::fprintf(stderr, "[af-server] %d connections still open after 60 s\n", open_);
  }
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  std::string client;
  int port = 0;
  endpoint_of(sock, true, client, port);
  uint64_t id = 0;
  if (const int refused = admit(sock, client, id)) {
    refuse(sock, refused);
    return true;
  }
  try {
    std::thread([this, sock, id] {
      // Nothing may end the process from a connection thread (handler errors are answered by
      // httplib's exception handler; this catches the rest, e.g. bad_alloc): drop the connection.
      const char* error = nullptr;
      std::string what;
      try {
        serve_connection(sock, id);
      } catch (const std::exception& e) {
        what = e.what();
        error = what.c_str();
      } catch (...) {
        error = "unknown error";
      }
      if (error) {
        std::fprintf(stderr, "[af-server] connection dropped: %s\n", error);
        t_stream = nullptr;
        shutdown(sock, SHUT_RDWR);
        close(sock);
      }
      release(id);
    }).detach();
  } catch (const std::system_error&) {  // out of threads
    stop_waiting(id);
    release(id);
    refuse(sock, 503);
  }
  return true;
}

void GuardedServer::serve_connection(int fd, uint64_t id) {
  const std::function<bool()> stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  const int write_ms = static_cast<int>(write_timeout_sec_ * 1000 + write_timeout_usec_ / 1000);
  constexpr int kLingerMs = 2000;
  std::string buffer;
  for (size_t served = 0;; ++served) {
    Clock::time_point started_at;
    if (served > 0) set_waiting(id);
    const HeadOutcome head = read_head(fd, buffer, served == 0, limits_, stopping, started_at);
    if (!stop_waiting(id) || head == HeadOutcome::kIdle) break;
    if (head != HeadOutcome::kReady) {
      const bool late = head == HeadOutcome::kTimeout;
      const std::string what =
          late ? "The request headers were not received within " +
                     format_seconds(limits_.header_timeout) + " (--header-timeout)."
               : "The request headers are larger than " + std::to_string(limits_.head.max_bytes) +
                     " bytes or " + std::to_string(limits_.head.max_lines) +
                     " lines (--max-header-bytes, --max-header-lines).";
      send_error(fd,
                 ApiError(late ? 408 : 431, what, "invalid_request_error", "",
                          late ? "request_timeout" : "request_header_fields_too_large"),
                 write_ms);
      if (on_refused) on_refused(late ? 408 : 431);
      close_gracefully(fd, stopping() ? 0 : kLingerMs);
      return;
    }
    ConnectionStream stream(fd, std::move(buffer), started_at + seconds(limits_.request_timeout),
                            write_ms, stopping);
    t_stream = &stream;
    const bool last = served + 1 >= keep_alive_max_count_ || stopping();
    bool closed = false;
    const bool ok = process_request(stream, last, closed, {});
    t_stream = nullptr;
    if (stream.close_requested) {
      close_gracefully(fd, stopping() ? 0 : kLingerMs);
      return;
    }
    if (!ok || closed || last) break;
    buffer = stream.take_unread();
  }
  shutdown(fd, SHUT_RDWR);
  close(fd);
}

// Reads a request body, counting the bytes after chunked and Content-Encoding decoding, so one
// limit (--max-body-bytes) holds for every framing and a compression bomb stops at the limit.
std::string read_body(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader, const ServerOptions& options) {
  const std::string limit = std::to_string(options.max_body) + " bytes (--max-body-bytes)";
  auto too_large = [&] {
    GuardedServer::close_after_response();
    return ApiError(413, "The request body is larger than " + limit + ", counted after decoding.",
                    "invalid_request_error", "", "request_too_large");
  };
  if (req.has_header("Content-Length") &&
      req.get_header_value<uint64_t>("Content-Length") > options.max_body) {
    throw too_large();  // refused before reading it
  }
  if (req.is_multipart_form_data()) {
    GuardedServer::close_after_response();
    throw ApiError(415, "multipart/form-data bodies are not accepted; send JSON.",
                   "invalid_request_error", "", "unsupported_media_type");
  }
  // httplib decodes these three and passes any other coding through as if it were none.
  const std::string coding = req.get_header_value("Content-Encoding");
  if (!coding.empty() && coding != "identity" && coding != "gzip" && coding != "deflate" &&
      coding != "br") {
    GuardedServer::close_after_response();
    throw ApiError(415,
                   "Unsupported Content-Encoding '" + coding +
                       "' (gzip, deflate, br and identity are accepted).",
                   "invalid_request_error", "", "unsupported_media_type");
  }
  std::string body;
  bool over = false;
  const bool ok = reader([&](const char* data, size_t n) {
    over = n > options.max_body - body.size();
    if (!over) body.append(data, n);
    return !over;
  });
  if (ok) return body;
  GuardedServer::close_after_response();
  if (over || res.status == 413) throw too_large();
  if (GuardedServer::request_timed_out()) {
    throw ApiError(408,
                   "The request body was not received within " +
                       format_seconds(options.front.request_timeout) +
                       " of the request's start (--request-timeout).",
                   "invalid_request_error", "", "request_timeout");
  }
  throw ApiError(400,
                 "The request body could not be read: the connection closed early, or its "
                 "chunked framing or compressed data is malformed.",
                 "invalid_request_error", "", "invalid_body");
}

// httplib reads the body of a request to any other route into memory with no limit but
// Content-Length's. Only the two POST endpoints take a body; anything else that declares one is
// answered before it is read, and the connection closed.
void refuse_unexpected_body(const httplib::Request& req) {
  const bool has_body =
      req.has_header("Transfer-Encoding") ||
      (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
  const bool generate = req.path == "/v1/chat/completions" || req.path == "/v1/completions" ||
                        req.path == "/v1/audio/transcriptions" ||
                        req.path == "/v1/audio/translations" || req.path == "/v1/embeddings";
  const bool takes_body = generate || req.path == "/tokenize" || req.path == "/detokenize" ||
                          req.path == "/apply-template";
  if (!has_body || (takes_body && req.method == "POST")) return;
  GuardedServer::close_after_response();
  const bool known = takes_body || req.path == "/health" || req.path == "/v1/models" ||
                     req.path == "/metrics" || req.path == "/props";
  if (!known) {
    throw ApiError(404, "Unknown request URL: " + req.method + " " + req.path + ".",
                   "invalid_request_error", "", "unknown_url");
  }
  throw ApiError(400,
                 "Only POST /v1/chat/completions, /v1/completions, /v1/embeddings, /tokenize, "
                 "/detokenize and /apply-template take a request body; " +
                     req.method + " " + req.path + " does not.",
                 "invalid_request_error", "", "unexpected_body");
}

}  // namespace af::server
