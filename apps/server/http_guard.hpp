#pragma once
// The parts of af-server's HTTP front that need no socket: finding the end of a request head
// under a size and line budget, and checking an API key. Shared with the tests and the fuzzer.
#include <cstddef>
#include <string>
#include <string_view>

namespace af::server {

struct HeadLimits {
  size_t max_bytes = 64 << 10;  // request line + header lines + blank line (+ blank lines before)
  size_t max_lines = 100;       // header lines, not counting the request line
};

// What af-server's HTTP front allows one client (docs/SERVER.md, "Limits").
struct FrontLimits {
  double header_timeout = 10;     // s from a request's first byte (or the connection) to its head
  double request_timeout = 30;    // s from a request's first byte to the end of its body
  double keep_alive_timeout = 2;  // s an idle connection waits for its next request
  HeadLimits head;                // 431 beyond these
  int max_connections = 512;      // open connections in all; more get 503
  int max_connections_per_client = 64;  // open connections from one IP address; more get 429
};

enum class HeadStatus {
  kIncomplete,  // no blank line yet, within the limits
  kComplete,    // head_size() bytes form the head
  kTooLarge,    // over a limit before the head ended: answer 431
};

// Scans a growing buffer for the blank line that ends an HTTP/1.1 request head. Call scan() with
// the whole buffer each time bytes arrive; it resumes where it stopped, so a head sent one byte
// at a time costs linear time. Lines end with LF (CRLF or a bare LF). Blank lines before the
// request line are skipped (RFC 9112 2.2): skipped() says how many bytes they took.
class HeadScanner {
 public:
  explicit HeadScanner(HeadLimits limits) : limits_(limits) {}

  HeadStatus scan(std::string_view buffer);
  size_t head_size() const { return head_size_; }  // includes the skipped bytes
  size_t skipped() const { return skipped_; }
  size_t header_lines() const { return lines_ > 0 ? lines_ - 1 : 0; }

 private:
  HeadLimits limits_;
  size_t pos_ = 0;         // next byte to look at
  size_t line_start_ = 0;  // first byte of the current line
  size_t lines_ = 0;       // non-blank lines seen, the request line included
  size_t skipped_ = 0;
  size_t head_size_ = 0;
};

// Whether an Authorization header value carries `key` with the Bearer scheme. The scheme is
// case-insensitive (RFC 9110 11.1); the key is compared in constant time.
bool bearer_key_matches(std::string_view authorization, std::string_view key);

// The API key in a key file: its first line without surrounding whitespace. Throws af::Error
// naming the file when it cannot be read or holds no key.
std::string read_api_key_file(const std::string& path);

}  // namespace af::server
