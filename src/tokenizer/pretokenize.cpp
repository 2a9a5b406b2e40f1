// Pre-tokenizer split regexes, written as matchers over code points instead of a regex engine.
// Each function tries the alternatives of the original pattern in order at the current position
// and returns the length of the first that matches, so the result equals a leftmost-first
// regex engine (Oniguruma in HF tokenizers) scanning the text with that pattern:
//
// GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2:  the same with \p{N} (one digit per piece) instead of \p{N}{1,3}.
//
// Every code point is white space, a letter, a number or "other", so one alternative always
// matches and the pieces cover the text.
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {
namespace {

using Cps = std::vector<char32_t>;

bool is_other(char32_t c) { return !is_whitespace(c) && !is_letter(c) && !is_number(c); }

char32_t lower_ascii(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's 't 're 've 'm 'll 'd; returns the length or 0.
size_t contraction(const Cps& c, size_t i, bool ignore_case) {
  const size_t n = c.size();
  if (c[i] != '\'' || i + 1 >= n) return 0;
  auto at = [&](size_t k) { return ignore_case ? lower_ascii(c[k]) : c[k]; };
  const char32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < n) {
    const char32_t b = at(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

size_t run(const Cps& c, size_t i, bool (*pred)(char32_t)) {
  size_t j = i;
  while (j < c.size() && pred(c[j])) ++j;
  return j - i;
}

// \s+(?!\S) then \s+: a run of white space gives up its last character to the next piece
// unless the run ends the text or is a single character.
size_t whitespace_tail(const Cps& c, size_t i) {
  const size_t k = run(c, i, is_whitespace);
  if (k == 0) return 0;
  if (i + k == c.size() || k == 1) return k;
  return k - 1;
}

size_t match_gpt2(const Cps& c, size_t i) {
  const size_t n = c.size();
  if (size_t k = contraction(c, i, false)) return k;
  const size_t sp = c[i] == ' ' ? 1 : 0;
  if (i + sp < n) {
    if (size_t k = run(c, i + sp, is_letter)) return sp + k;
    if (size_t k = run(c, i + sp, is_number)) return sp + k;
    if (size_t k = run(c, i + sp, is_other)) return sp + k;
  }
  return whitespace_tail(c, i);
}

size_t match_llama3(const Cps& c, size_t i, size_t max_digits) {
  const size_t n = c.size();
  if (size_t k = contraction(c, i, true)) return k;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c[i] != '\r' && c[i] != '\n' && !is_letter(c[i]) && !is_number(c[i]) && i + 1 < n) {
    if (size_t k = run(c, i + 1, is_letter)) return 1 + k;
  }
  if (size_t k = run(c, i, is_letter)) return k;
  if (size_t k = run(c, i, is_number)) return std::min(k, max_digits);
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  const size_t sp = c[i] == ' ' ? 1 : 0;
  if (i + sp < n) {
    if (size_t k = run(c, i + sp, is_other)) {
      size_t j = i + sp + k;
      while (j < n && (c[j] == '\r' || c[j] == '\n')) ++j;
      return j - i;
    }
  }
  // \s*[\r\n]+: the greedy \s* backs off to the last line break of the white space run.
  const size_t k = run(c, i, is_whitespace);
  for (size_t j = i + k; j > i; --j) {
    if (c[j - 1] == '\r' || c[j - 1] == '\n') return j - i;
  }
  return whitespace_tail(c, i);
}

}  // namespace

std::vector<size_t> pretokenize(PreTokenizer pre, const std::vector<char32_t>& cps) {
  std::vector<size_t> ends;
  if (pre == PreTokenizer::kNone) {
    if (!cps.empty()) ends.push_back(cps.size());
    return ends;
  }
  for (size_t i = 0; i < cps.size();) {
    size_t k = 0;
    switch (pre) {
      case PreTokenizer::kGpt2:
        k = match_gpt2(cps, i);
        break;
      case PreTokenizer::kLlama3:
        k = match_llama3(cps, i, 3);
        break;
      case PreTokenizer::kQwen2:
        k = match_llama3(cps, i, 1);
        break;
      case PreTokenizer::kNone:
        break;
    }
    if (k == 0) k = 1;  // unreachable by the argument above; keeps the loop finite regardless
    i += k;
    ends.push_back(i);
  }
  return ends;
}

const std::array<std::string, 256>& byte_to_unicode() {
  // GPT-2 keeps printable Latin-1 bytes as themselves and moves the rest (controls, space,
  // 0x7F-0xA0, 0xAD) to U+0100 upwards in byte order, so every byte is a visible character.
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      append_utf8(t[b], keep ? char32_t(b) : next++);
    }
    return t;
  }();
  return table;
}

int byte_from_unicode(char32_t cp) {
  if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
    return static_cast<int>(cp);
  if (cp < 256 || cp >= 256 + 68) return -1;  // 68 bytes are moved
  static const std::array<uint8_t, 68> moved = [] {
    std::array<uint8_t, 68> m{};
    int k = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      if (!keep) m[k++] = static_cast<uint8_t>(b);
    }
    return m;
  }();
  return moved[cp - 256];
}

}  // namespace af::tok::detail
