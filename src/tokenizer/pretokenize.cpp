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
#include <cstdint>

#include "af/core/error.hpp"
#include "tokenizer/cancel.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {
namespace {

// The text a matcher sees: the code points of one piece. Matchers only look forward from the
// current position, and every scan is bounded by what it returns (or, for \p{N}{1,3}, by
// three), so pre-tokenising n code points costs O(n) whatever the runs in it.
struct Text {
  const char32_t* c;
  size_t n;
};

bool is_other(char32_t c) { return !is_whitespace(c) && !is_letter(c) && !is_number(c); }

char32_t lower_ascii(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's 't 're 've 'm 'll 'd; returns the length or 0.
size_t contraction(Text t, size_t i, bool ignore_case) {
  if (t.c[i] != '\'' || i + 1 >= t.n) return 0;
  auto at = [&](size_t k) { return ignore_case ? lower_ascii(t.c[k]) : t.c[k]; };
  const char32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < t.n) {
    const char32_t b = at(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

size_t run(Text t, size_t i, bool (*pred)(char32_t), size_t limit = SIZE_MAX) {
  const size_t end = i + std::min(limit, t.n - i);
  size_t j = i;
  while (j < end && pred(t.c[j])) ++j;
  return j - i;
}

// \s+(?!\S) then \s+: a run of white space gives up its last character to the next piece
// unless the run ends the text or is a single character.
size_t whitespace_tail(Text t, size_t i, size_t k) {
  if (k == 0) return 0;
  if (i + k == t.n || k == 1) return k;
  return k - 1;
}

size_t match_gpt2(Text t, size_t i) {
  if (size_t k = contraction(t, i, false)) return k;
  const size_t sp = t.c[i] == ' ' ? 1 : 0;
  if (i + sp < t.n) {
    if (size_t k = run(t, i + sp, is_letter)) return sp + k;
    if (size_t k = run(t, i + sp, is_number)) return sp + k;
    if (size_t k = run(t, i + sp, is_other)) return sp + k;
  }
  return whitespace_tail(t, i, run(t, i, is_whitespace));
}

size_t match_llama3(Text t, size_t i, size_t max_digits) {
  const char32_t* c = t.c;
  if (size_t k = contraction(t, i, true)) return k;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c[i] != '\r' && c[i] != '\n' && !is_letter(c[i]) && !is_number(c[i]) && i + 1 < t.n) {
    if (size_t k = run(t, i + 1, is_letter)) return 1 + k;
  }
  if (size_t k = run(t, i, is_letter)) return k;
  // \p{N}{1,max_digits}: the scan stops at max_digits; scanning the whole run to cut three
  // digits off it made a run of n digits cost n^2 / 6.
  if (size_t k = run(t, i, is_number, max_digits)) return k;
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  const size_t sp = c[i] == ' ' ? 1 : 0;
  if (i + sp < t.n) {
    if (size_t k = run(t, i + sp, is_other)) {
      size_t j = i + sp + k;
      while (j < t.n && (c[j] == '\r' || c[j] == '\n')) ++j;
      return j - i;
    }
  }
  // \s*[\r\n]+: the greedy \s* backs off to the last line break of the white space run.
  const size_t k = run(t, i, is_whitespace);
  for (size_t j = i + k; j > i; --j) {
    if (c[j - 1] == '\r' || c[j - 1] == '\n') return j - i;
  }
  return whitespace_tail(t, i, k);
}

// Calls on_end(end) for each piece of t, in order.
template <class OnEnd>
void for_each_pretoken(PreTokenizer pre, Text t, OnEnd&& on_end) {
  if (pre == PreTokenizer::kNone) {
    if (t.n > 0) on_end(t.n);
    return;
  }
  size_t polled = 0;
  for (size_t i = 0; i < t.n;) {
    size_t k = 0;
    switch (pre) {
      case PreTokenizer::kGpt2:
        k = match_gpt2(t, i);
        break;
      case PreTokenizer::kLlama3:
        k = match_llama3(t, i, 3);
        break;
      case PreTokenizer::kQwen2:
        k = match_llama3(t, i, 1);
        break;
      case PreTokenizer::kNone:
        break;
    }
    if (k == 0) k = 1;  // unreachable by the argument above; keeps the loop finite regardless
    i += k;
    on_end(i);
    if (i - polled >= 4096) {
      poll_cancel(i - polled);
      polled = i;
    }
  }
}

}  // namespace

std::vector<size_t> pretokenize(PreTokenizer pre, const std::vector<char32_t>& cps) {
  std::vector<size_t> ends;
  for_each_pretoken(pre, Text{cps.data(), cps.size()}, [&](size_t end) { ends.push_back(end); });
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

// Calls on_segment(Segment) for the segments of piece [b, e) of cps, in order.
template <class OnSegment>
void for_each_segment(const PreSplit& step, const std::vector<char32_t>& cps, Span piece,
                      OnSegment&& on_segment) {
  // Plain variables, not a structured binding: clang 14 (the fuzz build) cannot capture those.
  const size_t b = piece.first, e = piece.second;
  switch (step.kind) {
    case SplitKind::kGpt2:
    case SplitKind::kLlama3:
    case SplitKind::kQwen2: {
      const PreTokenizer pre = step.kind == SplitKind::kGpt2     ? PreTokenizer::kGpt2
                               : step.kind == SplitKind::kLlama3 ? PreTokenizer::kLlama3
                                                                 : PreTokenizer::kQwen2;
      size_t begin = b;
      for_each_pretoken(pre, Text{cps.data() + b, e - b}, [&](size_t end) {
        on_segment(Segment{begin, b + end, true});
        begin = b + end;
      });
      return;
    }
    case SplitKind::kRegex: {
      size_t prev = b;
      step.regex->for_each_match(cps.data() + b, e - b, [&](size_t mb, size_t me) {
        if (prev != b + mb) on_segment(Segment{prev, b + mb, false});
        on_segment(Segment{b + mb, b + me, true});
        prev = b + me;
      });
      if (prev != e) on_segment(Segment{prev, e, false});
      return;
    }
    default: {
      size_t last = b;
      for (size_t i = b; i < e; ++i) {
        if (!char_predicate(step.kind, cps[i])) continue;
        if (last < i) on_segment(Segment{last, i, false});
        on_segment(Segment{i, i + 1, true});
        last = i + 1;
      }
      if (last < e) on_segment(Segment{last, e, false});
      return;
    }
  }
}

// SplitDelimiterBehavior over a stream of segments: at most one pending piece is held, so a
// piece of n code points is split in O(1) memory besides the pieces handed on.
template <class Emit>
class BehaviorStream {
 public:
  BehaviorStream(SplitBehavior behavior, Emit& emit) : behavior_(behavior), emit_(emit) {}

  void push(Segment s) {
    switch (behavior_) {
      case SplitBehavior::kIsolated:
        return out(s);
      case SplitBehavior::kRemoved:
        if (!s.match) out(s);
        return;
      case SplitBehavior::kMergedWithPrevious:
        // A match joins the non-match piece before it.
        return merge_if(s, s.match && !previous_match_);
      case SplitBehavior::kContiguous:
        return merge_if(s, s.match == previous_match_);
      case SplitBehavior::kMergedWithNext:
        // A match joins the non-match segment after it: hold matches until the next one.
        if (has_pending_) {
          has_pending_ = false;
          if (!s.match) return out(Segment{pending_.begin, s.end, false});
          out(pending_);
        }
        if (s.match) {
          pending_ = s;
          has_pending_ = true;
        } else {
          out(s);
        }
        return;
    }
  }

  void finish() {
    if (has_pending_) out(pending_);
    has_pending_ = false;
  }

 private:
  void merge_if(Segment s, bool merge) {
    if (merge && has_pending_) {
      pending_.end = s.end;
    } else {
      if (has_pending_) out(pending_);
      pending_ = s;
      has_pending_ = true;
    }
    previous_match_ = s.match;
  }
  void out(Segment s) {
    if (s.end > s.begin) emit_(s.begin, s.end);
  }

  SplitBehavior behavior_;
  Emit& emit_;
  Segment pending_{0, 0, false};
  bool has_pending_ = false, previous_match_ = false;
};

// Applies steps[k..] to piece [b, e): the pieces of step k go on to step k + 1 as soon as
// they are cut, so no list of all pieces is ever built.
void split_from(const std::vector<PreSplit>& steps, size_t k, const std::vector<char32_t>& cps,
                Span piece, const PieceFn& on_piece) {
  if (k == steps.size()) return on_piece(piece.first, piece.second);
  const PreSplit& step = steps[k];
  auto next = [&](size_t b, size_t e) { split_from(steps, k + 1, cps, {b, e}, on_piece); };
  BehaviorStream<decltype(next)> behavior(step.behavior, next);
  for_each_segment(step, cps, piece, [&](Segment s) {
    if (step.invert) s.match = !s.match;
    behavior.push(s);
  });
  behavior.finish();
}

}  // namespace

void for_each_split(const std::vector<PreSplit>& steps, const std::vector<char32_t>& cps,
                    Span piece, const PieceFn& on_piece) {
  split_from(steps, 0, cps, piece, on_piece);
}

std::vector<Span> apply_splits(const std::vector<PreSplit>& steps, const std::vector<char32_t>& cps,
                               std::vector<Span> pieces) {
  std::vector<Span> out;
  for (Span piece : pieces)
    for_each_split(steps, cps, piece, [&](size_t b, size_t e) { out.emplace_back(b, e); });
  return out;
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
