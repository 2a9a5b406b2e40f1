// af-server's client connection watching (apps/server/client_watch.hpp) on real loopback TCP
// connections: a client still there, one that half-closed, one that reset, found by its
// 4-tuple, and reading ended on every connection of a port at once.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "client_watch.hpp"

namespace af::server {
namespace {

int port_of(int fd, bool peer) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return rc == 0 ? ntohs(a.sin_port) : -1;
}

// A listener on 127.0.0.1 and the two ends of connections made to it.
struct Loopback {
  Loopback() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listener, 8), 0);
    port = port_of(listener, false);
  }
  ~Loopback() { close(listener); }

  // {client fd, accepted server fd}
  std::pair<int, int> connect_one() const {
    const int client = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return {client, accept(listener, nullptr, nullptr)};
  }

  int listener = -1;
  int port = -1;
};

// The state once it stops being kOpen (the peer's FIN or RST crosses loopback asynchronously),
// or kOpen after about max_ms milliseconds.
PeerState settled_state(int fd, int max_ms = 1000) {
  for (int i = 0; i < max_ms; ++i) {
    const PeerState s = peer_state(fd);
    if (s != PeerState::kOpen) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return PeerState::kOpen;
}

TEST(ClientWatch, OpenClientAndPipelinedBytesAreNotEndOfInput) {
  Loopback net;
  auto [client, server] = net.connect_one();
  EXPECT_EQ(peer_state(server), PeerState::kOpen);
  ASSERT_EQ(write(client, "GET", 3), 3);
  EXPECT_EQ(settled_state(server, 20), PeerState::kOpen);
  char buf[4] = {};
  EXPECT_EQ(read(server, buf, sizeof buf), 3) << "peer_state must not consume input";
  close(client);
  close(server);
}

TEST(ClientWatch, HalfCloseIsEndOfInputNotGone) {
  Loopback net;
  auto [client, server] = net.connect_one();
  ASSERT_EQ(shutdown(client, SHUT_WR), 0);
  EXPECT_EQ(settled_state(server), PeerState::kEndOfInput);
  // The half-closed client still reads what the server writes.
  ASSERT_EQ(write(server, "ok", 2), 2);
  char buf[2] = {};
  EXPECT_EQ(read(client, buf, sizeof buf), 2);
  close(client);
  close(server);
}

TEST(ClientWatch, ResetIsGone) {
  Loopback net;
  auto [client, server] = net.connect_one();
  const linger abort_on_close{1, 0};
  ASSERT_EQ(setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close), 0);
  close(client);  // RST
  EXPECT_EQ(settled_state(server), PeerState::kGone);
  close(server);
}

TEST(ClientWatch, ClosedClientIsGoneOnceAWriteIsAnsweredWithReset) {
  Loopback net;
  auto [client, server] = net.connect_one();
  close(client);  // FIN: indistinguishable from a half-close until the server writes
  EXPECT_EQ(settled_state(server), PeerState::kEndOfInput);
  ASSERT_EQ(send(server, "\n", 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(settled_state(server), PeerState::kGone);
  close(server);
}

TEST(ClientWatch, ClosedDescriptorIsGone) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  close(fd);
  EXPECT_EQ(peer_state(fd), PeerState::kGone);
}

TEST(ClientWatch, FindsTheAcceptedSocketByItsFourTuple) {
  Loopback net;
  auto [client, server] = net.connect_one();
  auto [client2, server2] = net.connect_one();
  EXPECT_EQ(find_connection_socket("127.0.0.1", port_of(client, false), net.port), server);
  EXPECT_EQ(find_connection_socket("127.0.0.1", port_of(client2, false), net.port), server2);
  EXPECT_EQ(find_connection_socket("127.0.0.2", port_of(client, false), net.port), -1);
  EXPECT_EQ(find_connection_socket("127.0.0.1", port_of(client, false), net.port + 1), -1);
  for (int fd : {client, server, client2, server2}) close(fd);
}

TEST(ClientWatch, ShutdownReadingEndsReadsOnEveryConnectionOfThePortNotWrites) {
  Loopback net;
  auto [client, server] = net.connect_one();
  auto [client2, server2] = net.connect_one();
  // The client ends have the listener's port as their peer, not as their own: left alone.
  EXPECT_EQ(shutdown_reading(net.port), 2);
  char buf[2];
  EXPECT_EQ(read(server, buf, 1), 0) << "a thread reading the connection returns at once";
  EXPECT_EQ(read(server2, buf, 1), 0);
  ASSERT_EQ(write(server2, "ok", 2), 2) << "a response being written still goes out";
  EXPECT_EQ(read(client2, buf, 2), 2);
  EXPECT_EQ(peer_state(client), PeerState::kOpen) << "the client side is not closed";
  for (int fd : {client, server, client2, server2}) close(fd);
}

}  // namespace
}  // namespace af::server
