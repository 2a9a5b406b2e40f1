// af-server's HTTP front over loopback sockets, with no model behind it: 431 for a header flood,
// 408 for slow heads and bodies, one decoded-size limit whatever the framing, an answer for a
// half-closed client, no second bind on a port, and the connection caps.
#include "http_front.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "api.hpp"
#include "server.hpp"
#include "test_util.hpp"

namespace af::server {
namespace {

using Clock = std::chrono::steady_clock;

// A GuardedServer with af-server's body handling on POST /v1/completions (it answers with the
// body's size) and GET /health, listening on a free loopback port.
class Front {
 public:
  explicit Front(ServerOptions options) : options_(std::move(options)), http_(options_.front) {
    http_.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
      refuse_unexpected_body(req);
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http_.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          try {
            std::rethrow_exception(ep);
          } catch (const ApiError& e) {
            res.status = e.status;
            res.set_content(error_body(e).dump(), "application/json");
          } catch (...) {
            res.status = 500;
          }
        });
    http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res,
                                         const httplib::ContentReader& reader) {
      res.set_content(std::to_string(read_body(req, res, reader, options_).size()), "text/plain");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!http_.is_running() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~Front() {
    http_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  ServerOptions options_;
  GuardedServer http_;
  int port_ = 0;
  std::thread thread_;
};

int connect_to(int port, const char* from = "127.0.0.1") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, from, &local.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// Reads until the server closes the connection or `timeout_s` passes.
std::string read_all(int fd, double timeout_s) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sends `data` from a second thread (the server may answer before reading it all) and returns
// everything the server sends before it closes.
std::string exchange(int port, const std::string& data, bool half_close = false,
                     double timeout_s = 10) {
  const int fd = connect_to(port);
  std::thread sender([&] {
    for (size_t sent = 0; sent < data.size();) {
      const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
    if (half_close) shutdown(fd, SHUT_WR);
  });
  const std::string answer = read_all(fd, timeout_s);
  sender.join();
  close(fd);
  return answer;
}

std::string post(const std::string& body, const std::string& headers = "") {
  return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.starts_with(prefix); }

TEST(HttpFront, HeaderFloodIs431) {
  Front front({});
  std::string flood = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 2048; ++i) flood += "X-Pad: " + std::string(1000, 'y') + "\r\n";
  const std::string answer = exchange(front.port(), flood + "\r\n");
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 431")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("request_header_fields_too_large"), std::string::npos);
}

TEST(HttpFront, SlowHeadIs408AfterTheHeaderTimeout) {
  ServerOptions options;
  options.front.header_timeout = 0.3;
  Front front(options);
  const auto start = Clock::now();
  const std::string answer = exchange(front.port(), "GET /health HTTP/1.1\r\nHo");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 408")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("request_timeout"), std::string::npos);
  EXPECT_GT(seconds, 0.25);
  EXPECT_LT(seconds, 2.0 * af::test::time_scale());
}

TEST(HttpFront, SlowBodyIs408AfterTheRequestTimeout) {
  ServerOptions options;
  options.front.request_timeout = 0.5;
  Front front(options);
  const auto start = Clock::now();
  const std::string answer = exchange(
      front.port(), "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 408")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("request_timeout"), std::string::npos);
  EXPECT_LT(seconds, 3.0 * af::test::time_scale());
}

TEST(HttpFront, ChunkedBodyIsCountedAgainstTheLimit) {
  ServerOptions options;
  options.max_body = 1 << 20;
  Front front(options);
  std::string chunked;
  const std::string piece(65536, 'x');
  for (int i = 0; i < 32; ++i) chunked += "10000\r\n" + piece + "\r\n";  // 2 MiB
  chunked += "0\r\n\r\n";
  const std::string answer = exchange(
      front.port(),
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked);
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 413")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("request_too_large"), std::string::npos);

  const std::string small = "4\r\nabcd\r\n0\r\n\r\n";
  const std::string ok = exchange(front.port(),
                                  "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: "
                                  "close\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                      small);
  EXPECT_TRUE(starts_with(ok, "HTTP/1.1 200")) << ok.substr(0, 100);
}

TEST(HttpFront, FormUrlencodedBodiesAreNotCappedAt8KiB) {
  Front front({});
  const std::string answer = exchange(
      front.port(),
      post(std::string(100 << 10, 'x'), "Content-Type: application/x-www-form-urlencoded\r\n"));
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 200")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("\r\n\r\n102400"), std::string::npos);
}

TEST(HttpFront, BodyOnARouteWithoutOneIsRefusedUnread) {
  Front front({});
  const std::string answer = exchange(
      front.port(), "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n");
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 400")) << answer.substr(0, 100);
  EXPECT_NE(answer.find("unexpected_body"), std::string::npos);
}

TEST(HttpFront, HalfClosedClientGetsItsAnswer) {
  Front front({});
  const std::string answer = exchange(front.port(), post("{}"), /*half_close=*/true);
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 200")) << answer.substr(0, 100);
}

TEST(HttpFront, SecondBindOnTheSamePortFails) {
  Front front({});
  GuardedServer second(FrontLimits{});
  errno = 0;
  EXPECT_FALSE(second.bind_to_port("127.0.0.1", front.port()));
  EXPECT_EQ(errno, EADDRINUSE);
}

TEST(HttpFront, PerClientCapRefusesOrReplacesAnIdleConnection) {
  ServerOptions options;
  options.front.max_connections_per_client = 2;
  Front front(options);
  const int idle1 = connect_to(front.port(), "127.0.0.7");
  const int idle2 = connect_to(front.port(), "127.0.0.7");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int third = connect_to(front.port(), "127.0.0.7");
  const std::string refused = read_all(third, 2);
  EXPECT_TRUE(starts_with(refused, "HTTP/1.1 429")) << refused.substr(0, 100);
  close(third);

  // Idle for over a second: a new connection takes the place of the oldest.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const int fresh = connect_to(front.port(), "127.0.0.7");
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(send(fresh, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  const std::string answer = read_all(fresh, 2);
  EXPECT_TRUE(starts_with(answer, "HTTP/1.1 200")) << answer.substr(0, 100);
  EXPECT_EQ(read_all(idle1, 1), "");  // closed by the server
  close(fresh);
  close(idle1);
  close(idle2);
}

}  // namespace
}  // namespace af::server
