#include "http_guard.hpp"

#include <algorithm>
#include <fstream>

#include "af/core/error.hpp"

namespace af::server {

HeadStatus HeadScanner::scan(std::string_view buffer) {
  if (head_size_ > 0) return HeadStatus::kComplete;
  for (; pos_ < buffer.size(); ++pos_) {
    if (buffer[pos_] != '\n') continue;
    const size_t end = pos_ + 1;
    const size_t length = end - line_start_;
    const bool blank = length == 1 || (length == 2 && buffer[line_start_] == '\r');
    line_start_ = end;
    if (blank && lines_ == 0) {
      skipped_ = end;
      continue;
    }
    if (end > limits_.max_bytes) return HeadStatus::kTooLarge;
    if (blank) {
      head_size_ = end;
      ++pos_;
      return HeadStatus::kComplete;
    }
    if (++lines_ > limits_.max_lines + 1) return HeadStatus::kTooLarge;
  }
  // Over budget even before the end arrives (skipped blank lines count too: they are memory).
  if (buffer.size() > limits_.max_bytes) return HeadStatus::kTooLarge;
  return HeadStatus::kIncomplete;
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_space(s.front()) || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (is_space(s.back()) || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Compares without an early exit, so the time taken does not tell how much of a key was right.
bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

bool bearer_key_matches(std::string_view authorization, std::string_view key) {
  constexpr std::string_view kScheme = "bearer";
  authorization = trim(authorization);
  if (authorization.size() <= kScheme.size() || !is_space(authorization[kScheme.size()])) {
    return false;
  }
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != kScheme[i]) return false;
  }
  return equal_constant_time(trim(authorization.substr(kScheme.size())), key);
}

std::string read_api_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kIo, "server", "cannot read the API key file " + path);
  std::string line;
  std::getline(in, line);
  const std::string key(trim(line));
  if (key.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "server",
                "the API key file " + path + " is empty (its first line is the key)");
  }
  return key;
}

}  // namespace af::server
