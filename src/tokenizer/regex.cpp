#define PCRE2_CODE_UNIT_WIDTH 32
#include "tokenizer/regex.hpp"

#include <pcre2.h>

#include <algorithm>
#include <cstdint>

#include "af/core/error.hpp"
#include "tokenizer/cancel.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {

namespace {
constexpr char kComponent[] = "tokenizer";
// Oniguruma's Unicode \w (Alphabetic, marks, decimal numbers, connector punctuation, joiners);
// PCRE2 10.42's leaves the marks out.
constexpr const char* kWord = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}";
std::string error_text(int code) {
  PCRE2_UCHAR message[256];
  pcre2_get_error_message(code, message, 256);
  std::string text;
  for (size_t i = 0; i < 256 && message[i] != 0; ++i) append_utf8(text, message[i]);
  return text;
}
}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

std::string oniguruma_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (e == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else if (e == 'w') {
        out += in_class ? kWord : "[" + std::string(kWord) + "]";
      } else if (e == 'W' && !in_class) {
        out += "[^" + std::string(kWord) + "]";
      } else {
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

Regex::Regex(std::string_view pattern, const std::string& origin)
    : pattern_(pattern), origin_(origin), code_(std::make_unique<Code>()) {
  std::vector<char32_t> cps;
  try {
    cps = decode_utf8(oniguruma_to_pcre2(pattern));
  } catch (const Error&) {
    fail(ErrorCode::kFormat, kComponent, origin, ": split pattern is not valid UTF-8");
  }
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(cps.data()), cps.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &offset, nullptr);
  if (code_->code == nullptr) {
    fail(ErrorCode::kFormat, kComponent, origin, ": split pattern \"", pattern_,
         "\" does not compile (", error_text(err), " at character ", offset, ")");
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
}

Regex::~Regex() = default;

namespace {

// One search's match data and match context (which carries the match limit).
class MatchData {
 public:
  explicit MatchData(const pcre2_code* code)
      : data_(pcre2_match_data_create_from_pattern(code, nullptr)),
        context_(pcre2_match_context_create(nullptr)) {
    AF_CHECK(data_ != nullptr && context_ != nullptr, ErrorCode::kInternal, kComponent,
             "out of memory for regex matching");
  }
  ~MatchData() {
    pcre2_match_data_free(data_);
    pcre2_match_context_free(context_);
  }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;

  int match(const pcre2_code* code, const char32_t* text, size_t n, size_t start, uint32_t options,
            uint64_t limit) {
    pcre2_set_match_limit(context_, static_cast<uint32_t>(std::min<uint64_t>(limit, UINT32_MAX)));
    return pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text), n, start,
                       options | PCRE2_NO_UTF_CHECK, data_, context_);
  }
  std::pair<size_t, size_t> range() const {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
    return {ov[0], ov[1]};
  }

 private:
  pcre2_match_data* data_;
  pcre2_match_context* context_;
};

}  // namespace

// Each search first runs unanchored with a small match limit: a match at b found from `start`
// cost at most (b - start + 1) * kFirstTryLimit, as PCRE2 restarts its count at each start
// position. When that limit is hit somewhere, the search goes on one start position at a
// time (anchored), doubling the limit where a position needs more, until the next match. Each
// try is charged its limit, so the total work is at most twice the charges, and the charges
// are bounded by the budget.
void Regex::for_each_match(const char32_t* text, size_t n,
                           const std::function<void(size_t, size_t)>& on_match) const {
  MatchData md(code_->code);
  const uint64_t budget = kWorkBase + kWorkPerChar * (uint64_t(n) + 1);
  uint64_t charged = 0;
  auto charge = [&](uint64_t units) {
    charged += units;
    AF_CHECK(charged <= budget, ErrorCode::kInvalidArgument, kComponent, origin_,
             ": split pattern \"", pattern_, "\" needs more than ", budget,
             " backtracking steps on a text of ", n,
             " characters (catastrophic backtracking; the budget is ", kWorkPerChar,
             " per character + ", kWorkBase, ")");
  };
  auto fail_rc = [&](int rc) {
    fail(ErrorCode::kInvalidArgument, kComponent, origin_, ": split pattern \"", pattern_,
         "\" failed on a text of ", n, " characters: ", error_text(rc));
  };
  size_t start = 0;
  bool anchored = false;
  while (start <= n) {
    int rc = 0;
    if (!anchored) {
      rc = md.match(code_->code, text, n, start, 0, kFirstTryLimit);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc == PCRE2_ERROR_MATCHLIMIT) {
        anchored = true;  // its work is at most that of the anchored tries over the same span
        continue;
      }
      if (rc < 0) fail_rc(rc);
      charge((md.range().first - start + 1) * kFirstTryLimit);
    } else {
      uint64_t limit = kFirstTryLimit;
      while (true) {
        charge(limit);
        rc = md.match(code_->code, text, n, start, PCRE2_ANCHORED, limit);
        if (rc != PCRE2_ERROR_MATCHLIMIT) break;
        limit *= 2;
      }
      if (rc == PCRE2_ERROR_NOMATCH) {
        ++start;
        continue;
      }
      if (rc < 0) fail_rc(rc);
      anchored = false;
    }
    const auto [b, e] = md.range();
    on_match(b, e);
    poll_cancel(e - start + 1);
    start = e > b ? e : e + 1;
  }
}

void Regex::find_all(const char32_t* text, size_t n,
                     std::vector<std::pair<size_t, size_t>>& matches) const {
  for_each_match(text, n, [&](size_t b, size_t e) { matches.emplace_back(b, e); });
}

}  // namespace af::tok::detail
