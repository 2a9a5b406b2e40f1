#pragma once
// The cost model that makes TemplateLimits real bounds. A rendering installs a Meter for its
// thread; the value helpers (string and container creation, decoding, printing, comparing,
// searching) charge it for the work they do, so no operation escapes the budget however it is
// reached. Units: one step per AST node evaluated, per container element created or visited, and
// per 64 bytes of string data built, copied, decoded, scanned or compared; memory is the bytes of
// strings and container slots created, counted cumulatively (never refunded), which bounds the
// peak held by values.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace af::tok::jinja {

class Meter {
 public:
  virtual ~Meter() = default;
  virtual void charge(uint64_t steps) = 0;
  virtual void allocate(uint64_t bytes) = 0;  // memory, plus the steps for writing it
  virtual void check_size(size_t bytes) const = 0;
};

// Installs a meter for the current thread for its lifetime (restoring the previous one).
class MeterScope {
 public:
  explicit MeterScope(Meter* meter);
  ~MeterScope();
  MeterScope(const MeterScope&) = delete;
  MeterScope& operator=(const MeterScope&) = delete;

 private:
  Meter* saved_;
};

// Free functions charging the current thread's meter; without one (parsing, the caller's
// context) they do nothing.
void charge_steps(uint64_t steps);
void charge_bytes(uint64_t bytes);  // work over `bytes` bytes that allocates nothing
void charge_allocation(uint64_t bytes);
void check_string_size(size_t bytes);

constexpr uint64_t kBytesPerStep = 64;

// Linear-time substring search (Knuth-Morris-Pratt), charged by the bytes scanned: a plain
// std::string::find is O(haystack * needle) on inputs such as "aaa...ab" in "aaaa...".
// Returns npos when not found.
size_t find_text(std::string_view haystack, std::string_view needle, size_t from = 0);
size_t find_text(std::u32string_view haystack, std::u32string_view needle, size_t from = 0);
// The last occurrence (Python's str.rfind), equally linear.
size_t rfind_text(std::u32string_view haystack, std::u32string_view needle);

}  // namespace af::tok::jinja
