#define PCRE2_CODE_UNIT_WIDTH 32
#include "tokenizer/regex.hpp"

#include <pcre2.h>

#include "af/core/error.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {

namespace {
constexpr char kComponent[] = "tokenizer";
// Oniguruma's Unicode \w (Alphabetic, marks, decimal numbers, connector punctuation, joiners);
// PCRE2 10.42's leaves the marks out.
constexpr const char* kWord = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}";
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
    : pattern_(pattern), code_(std::make_unique<Code>()) {
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
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(err, message, 256);
    std::string text;
    for (size_t i = 0; i < 256 && message[i] != 0; ++i) append_utf8(text, message[i]);
    fail(ErrorCode::kFormat, kComponent, origin, ": split pattern \"", pattern_,
         "\" does not compile (", text, " at character ", offset, ")");
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
}

Regex::~Regex() = default;

void Regex::find_all(const char32_t* text, size_t n,
                     std::vector<std::pair<size_t, size_t>>& matches) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  AF_CHECK(md != nullptr, ErrorCode::kInternal, kComponent, "out of memory for regex matching");
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text);
  size_t start = 0;
  while (start <= n) {
    const int rc = pcre2_match(code_->code, subject, n, start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH) {
        pcre2_match_data_free(md);
        fail(ErrorCode::kInternal, kComponent, "regex \"", pattern_, "\" failed with code ", rc);
      }
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    matches.emplace_back(b, e);
    start = e > b ? e : e + 1;
  }
  pcre2_match_data_free(md);
}

}  // namespace af::tok::detail
