#include "client_watch.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <functional>

namespace af::server {

namespace {

struct Endpoint {
  std::string addr;
  int port = -1;
};

Endpoint endpoint_of(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    return {text, ntohs(in.sin_port)};
  }
  if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    return {text, ntohs(in6.sin6_port)};
  }
  return {};
}

// Calls visit(fd, local, peer) for every connected TCP socket of this process until it returns
// true. /proc/self/fd lists only the open descriptors, so the scan costs one pass over them.
void for_each_connection(const std::function<bool(int, const Endpoint&, const Endpoint&)>& visit) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  const int own = dirfd(dir);
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || end == entry->d_name || fd == own) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;  // not a socket, or not connected (the listener)
    }
    if (visit(static_cast<int>(fd), endpoint_of(local), endpoint_of(peer))) break;
  }
  closedir(dir);
}

}  // namespace

PeerState peer_state(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) < 0) return errno == EINTR ? PeerState::kOpen : PeerState::kGone;
  if (p.revents & (POLLERR | POLLNVAL)) return PeerState::kGone;
  if (!(p.revents & (POLLIN | POLLRDHUP | POLLHUP))) return PeerState::kOpen;
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return PeerState::kOpen;  // a pipelined request: not ours to read
  if (n == 0) return PeerState::kEndOfInput;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? PeerState::kOpen
                                                                   : PeerState::kGone;
}

int find_connection_socket(const std::string& remote_addr, int remote_port, int local_port) {
  int found = -1;
  for_each_connection([&](int fd, const Endpoint& local, const Endpoint& peer) {
    if (local.port != local_port || peer.port != remote_port || peer.addr != remote_addr) {
      return false;
    }
    found = fd;
    return true;
  });
  return found;
}

int shutdown_reading(int local_port) {
  int n = 0;
  for_each_connection([&](int fd, const Endpoint& local, const Endpoint&) {
    if (local.port == local_port && shutdown(fd, SHUT_RD) == 0) ++n;
    return false;
  });
  return n;
}

}  // namespace af::server
