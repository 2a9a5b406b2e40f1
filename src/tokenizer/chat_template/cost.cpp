#include "tokenizer/chat_template/cost.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace af::tok::jinja {
namespace {

thread_local Meter* current_meter = nullptr;

uint64_t steps_for_bytes(uint64_t bytes) { return (bytes + kBytesPerStep - 1) / kBytesPerStep; }

// Knuth-Morris-Pratt: failure[i] is the length of the longest proper border of needle[0..i].
template <class CharT>
std::vector<uint32_t> failure_table(std::basic_string_view<CharT> needle) {
  charge_allocation(needle.size() * sizeof(uint32_t));
  std::vector<uint32_t> failure(needle.size(), 0);
  uint32_t k = 0;
  for (size_t i = 1; i < needle.size(); ++i) {
    while (k > 0 && needle[i] != needle[k]) k = failure[k - 1];
    if (needle[i] == needle[k]) ++k;
    failure[i] = k;
  }
  return failure;
}

template <class CharT>
size_t kmp_find(std::basic_string_view<CharT> haystack, std::basic_string_view<CharT> needle,
                size_t from) {
  using View = std::basic_string_view<CharT>;
  if (from > haystack.size()) return View::npos;
  if (needle.empty()) return from;
  if (needle.size() > haystack.size() - from) return View::npos;
  // Short needles: the library search is fast and its worst case (haystack * needle) is small.
  if (needle.size() <= 4) {
    const size_t hit = haystack.find(needle, from);
    const size_t end = hit == View::npos ? haystack.size() : hit + needle.size();
    charge_bytes((end - from) * needle.size() * sizeof(CharT));
    return hit;
  }
  const std::vector<uint32_t> failure = failure_table(needle);
  size_t k = 0;
  for (size_t i = from; i < haystack.size(); ++i) {
    while (k > 0 && haystack[i] != needle[k]) k = failure[k - 1];
    if (haystack[i] == needle[k]) ++k;
    if (k == needle.size()) {
      charge_bytes((i + 1 - from) * sizeof(CharT));
      return i + 1 - needle.size();
    }
  }
  charge_bytes((haystack.size() - from) * sizeof(CharT));
  return View::npos;
}

}  // namespace

MeterScope::MeterScope(Meter* meter) : saved_(current_meter) { current_meter = meter; }
MeterScope::~MeterScope() { current_meter = saved_; }

void charge_steps(uint64_t steps) {
  if (current_meter) current_meter->charge(steps);
}
void charge_bytes(uint64_t bytes) {
  if (current_meter) current_meter->charge(steps_for_bytes(bytes));
}
void charge_allocation(uint64_t bytes) {
  if (current_meter) current_meter->allocate(bytes);
}
void check_string_size(size_t bytes) {
  if (current_meter) current_meter->check_size(bytes);
}

size_t find_text(std::string_view haystack, std::string_view needle, size_t from) {
  return kmp_find(haystack, needle, from);
}
size_t find_text(std::u32string_view haystack, std::u32string_view needle, size_t from) {
  return kmp_find(haystack, needle, from);
}

size_t rfind_text(std::u32string_view haystack, std::u32string_view needle) {
  if (needle.size() > haystack.size()) return std::u32string_view::npos;
  // The last occurrence is the first one in the reversed strings.
  charge_allocation((haystack.size() + needle.size()) * sizeof(char32_t));
  const std::u32string hay_reversed(haystack.rbegin(), haystack.rend());
  const std::u32string needle_reversed(needle.rbegin(), needle.rend());
  const size_t hit = kmp_find<char32_t>(hay_reversed, needle_reversed, 0);
  if (hit == std::u32string_view::npos) return hit;
  return haystack.size() - hit - needle.size();
}

}  // namespace af::tok::jinja
