#pragma once
// A compiled split pattern of tokenizer.json (Oniguruma syntax, as HF tokenizers runs it) or of
// llama.cpp's tokenizer.ggml.pre lists, matched with PCRE2 in UTF + UCP mode over code points.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace af::tok::detail {

class Regex {
 public:
  // Throws af::Error (kFormat) naming `origin` and PCRE2's message when the pattern is invalid.
  Regex(std::string_view pattern, const std::string& origin);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) with the code point range of each successive non-overlapping
  // match in text[0, n), leftmost first, as Oniguruma's search loop finds them (an empty
  // match moves the search on by one character).
  //
  // The backtracking work is bounded per call: at most work_per_char() steps per code point
  // plus kWorkBase (PCRE2 match-limit units). PCRE2's own match limit restarts at every start
  // position, so a catastrophic pattern would otherwise pay it n times. Exceeding the budget
  // throws af::Error (kInvalidArgument) naming the pattern and `origin`.
  void for_each_match(const char32_t* text, size_t n,
                      const std::function<void(size_t, size_t)>& on_match) const;
  // The same, appending the ranges to `matches`.
  void find_all(const char32_t* text, size_t n,
                std::vector<std::pair<size_t, size_t>>& matches) const;

  // Work units per code point of the subject: each start position may spend kFirstTryLimit
  // before it is retried on its own with a doubling limit.
  static constexpr uint64_t kFirstTryLimit = 128;
  static constexpr uint64_t kWorkPerChar = 4 * kFirstTryLimit;
  static constexpr uint64_t kWorkBase = uint64_t(1) << 22;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::string origin_;
  std::unique_ptr<Code> code_;
};

// The pattern rewritten for PCRE2 where Oniguruma's meaning differs: \s also matches U+0085
// (Oniguruma's \s is White_Space; PCRE2's leaves NEL out), \w also matches marks.
std::string oniguruma_to_pcre2(std::string_view pattern);

}  // namespace af::tok::detail
