#pragma once
// A compiled split pattern of tokenizer.json (Oniguruma syntax, as HF tokenizers runs it) or of
// llama.cpp's tokenizer.ggml.pre lists, matched with PCRE2 in UTF + UCP mode over code points.
#include <cstddef>
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

  // Appends the [begin, end) code point ranges of the successive non-overlapping matches in
  // text[0, n), leftmost first, as Oniguruma's search loop finds them (an empty match moves
  // the search on by one character).
  void find_all(const char32_t* text, size_t n,
                std::vector<std::pair<size_t, size_t>>& matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

// The pattern rewritten for PCRE2 where Oniguruma's meaning differs: \s also matches U+0085
// (Oniguruma's \s is White_Space; PCRE2's leaves NEL out), \w also matches marks.
std::string oniguruma_to_pcre2(std::string_view pattern);

}  // namespace af::tok::detail
