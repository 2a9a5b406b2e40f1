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
#include <algorithm>

#include "af/core/error.hpp"
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

namespace {

// A piece cut into (begin, end, is_match) segments that cover it, as HF's Pattern does.
struct Segment {
  size_t begin, end;
  bool match;
};

bool is_bert_punctuation(char32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  return char_class(c) == CharClass::kPunct;
}

bool char_predicate(SplitKind kind, char32_t c) {
  switch (kind) {
    case SplitKind::kWhiteSpace:
      return is_whitespace(c);
    case SplitKind::kPunctuation:
      return is_bert_punctuation(c);
    case SplitKind::kDigits:
      return is_number(c);
    default:
      return false;
  }
}

void find_segments(const PreSplit& step, const std::vector<char32_t>& cps, Span piece,
                   std::vector<Segment>& segs, std::vector<char32_t>& scratch,
                   std::vector<Span>& scratch_spans) {
  const auto [b, e] = piece;
  switch (step.kind) {
    case SplitKind::kGpt2:
    case SplitKind::kLlama3:
    case SplitKind::kQwen2: {
      const PreTokenizer pre = step.kind == SplitKind::kGpt2     ? PreTokenizer::kGpt2
                               : step.kind == SplitKind::kLlama3 ? PreTokenizer::kLlama3
                                                                 : PreTokenizer::kQwen2;
      const bool whole = b == 0 && e == cps.size();
      if (!whole) scratch.assign(cps.begin() + b, cps.begin() + e);
      size_t begin = b;
      for (size_t end : pretokenize(pre, whole ? cps : scratch)) {
        segs.push_back({begin, b + end, true});
        begin = b + end;
      }
      return;
    }
    case SplitKind::kRegex: {
      scratch_spans.clear();
      step.regex->find_all(cps.data() + b, e - b, scratch_spans);
      size_t prev = b;
      for (auto [mb, me] : scratch_spans) {
        if (prev != b + mb) segs.push_back({prev, b + mb, false});
        segs.push_back({b + mb, b + me, true});
        prev = b + me;
      }
      if (prev != e) segs.push_back({prev, e, false});
      return;
    }
    default: {
      size_t last = b;
      for (size_t i = b; i < e; ++i) {
        if (!char_predicate(step.kind, cps[i])) continue;
        if (last < i) segs.push_back({last, i, false});
        segs.push_back({i, i + 1, true});
        last = i + 1;
      }
      if (last < e) segs.push_back({last, e, false});
      return;
    }
  }
}

// SplitDelimiterBehavior, applied to one piece's segments; appends the kept pieces.
void apply_behavior(SplitBehavior behavior, std::vector<Segment>& segs, std::vector<Span>& out) {
  std::vector<Segment> merged;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      merged = segs;
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segs)
        if (!s.match) merged.push_back(s);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.match && !previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous_match = s.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const Segment& s = segs[k];
        if (s.match && !previous_match && !merged.empty()) {
          merged.back().begin = s.begin;
        } else {
          merged.push_back(s);
        }
        previous_match = s.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.match == previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous_match = s.match;
      }
      break;
    }
  }
  for (const Segment& s : merged)
    if (s.end > s.begin) out.emplace_back(s.begin, s.end);
}

}  // namespace

std::vector<Span> apply_splits(const std::vector<PreSplit>& steps, const std::vector<char32_t>& cps,
                               std::vector<Span> pieces) {
  std::vector<Segment> segs;
  std::vector<char32_t> scratch;
  std::vector<Span> scratch_spans, next;
  for (const PreSplit& step : steps) {
    next.clear();
    for (Span piece : pieces) {
      segs.clear();
      find_segments(step, cps, piece, segs, scratch, scratch_spans);
      if (step.invert)
        for (Segment& s : segs) s.match = !s.match;
      apply_behavior(step.behavior, segs, next);
    }
    pieces.swap(next);
  }
  return pieces;
}

namespace {

// The GPT-2 regex (without its last alternative, which changes nothing when the unmatched
// rest is kept as llama.cpp and Isolated splits do).
constexpr const char* kGpt2Like =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

struct GgufPre {
  const char* names;               // separated by '|'
  std::vector<const char*> steps;  // "=gpt2" / "=llama3" / "=qwen2": the hand-written matcher
};

const std::vector<GgufPre>& gguf_pre_table() {
  static const std::vector<GgufPre> table = {
      {"gpt-2|gpt2|phi-2|jina-es|jina-de|gigachat|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|"
       "roberta-bpe|mpt|olmo|jais",
       {"=gpt2"}},
      {"llama3|llama-v3|llama-bpe|falcon3|dbrx|smaug-bpe|chatglm-bpe", {"=llama3"}},
      {"qwen2|stablelm2|megrez", {"=qwen2"}},
      {"deepseek-llm",
       {R"([\r\n])",
        "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
        "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
        "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
        "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
        "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
        "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
        "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
        "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
        "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
        "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
        "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
        "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
        "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", R"(\s+$)",
        "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N}+)"}},
      {"deepseek-coder",
       {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
        R"(\p{N})"}},
      {"deepseek-v3",
       {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Like, R"([0-9][0-9][0-9])"}},
      {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {R"(\p{N})", kGpt2Like}},
      {"poro-chat|bloom|gpt3-finnish",
       {" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"}},
      {"viking", {" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+", R"(\p{N})"}},
      {"tekken",
       {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {"gpt-4o|o200k",
       {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Like, R"(\p{N}+)", R"([0-9][0-9][0-9])"}},
  };
  return table;
}

}  // namespace

std::vector<PreSplit> splits_for_gguf_pre(const std::string& name, const std::string& origin) {
  for (const GgufPre& entry : gguf_pre_table()) {
    std::string_view names = entry.names;
    bool found = false;
    while (!names.empty() && !found) {
      const size_t bar = names.find('|');
      found = names.substr(0, bar) == name;
      names = bar == std::string_view::npos ? std::string_view() : names.substr(bar + 1);
    }
    if (!found) continue;
    std::vector<PreSplit> steps;
    for (const char* pattern : entry.steps) {
      PreSplit step;
      const std::string_view p = pattern;
      if (p == "=gpt2") {
        step.kind = SplitKind::kGpt2;
      } else if (p == "=llama3") {
        step.kind = SplitKind::kLlama3;
      } else if (p == "=qwen2") {
        step.kind = SplitKind::kQwen2;
      } else {
        step.regex = std::make_shared<Regex>(p, origin + " tokenizer.ggml.pre " + name);
      }
      steps.push_back(std::move(step));
    }
    return steps;
  }
  return {};
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
