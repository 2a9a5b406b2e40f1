#pragma once
// Watching a client's TCP connection while its request runs, without reading from it: the
// server notices a client that went away and cancels its generation instead of computing an
// answer nobody reads (cpp-httplib 0.11 only notices it when a write fails).
#include <string>

namespace af::server {

enum class PeerState {
  kOpen,        // nothing to say (or the client pipelined more bytes): still there
  kEndOfInput,  // the client sent FIN: it closed, or only half-closed (shutdown(SHUT_WR))
  kGone,        // the connection was reset or failed
};

// Looks at `fd` without blocking and without consuming anything it has received.
PeerState peer_state(int fd);

// The descriptor of this process's TCP connection from remote_addr:remote_port to local_port,
// or -1. cpp-httplib 0.11 does not hand a request's socket to its handler; the 4-tuple names it.
int find_connection_socket(const std::string& remote_addr, int remote_port, int local_port);

// shutdown(SHUT_RD) on every accepted TCP connection to local_port: threads waiting to read
// from them (idle keep-alive, a client sending its request slowly) see the end at once, while
// a response being written still goes out whole. Returns how many it shut down.
int shutdown_reading(int local_port);

}  // namespace af::server
