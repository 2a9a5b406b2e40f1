// The Unicode normalisers and the lower-case mapping against Python's unicodedata: digests over
// every code point (per plane, so a failure names the plane) and composed/reordered sequences,
// recorded by tools/tokenizer_make_unicode_fixture.py.
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {
namespace {

std::vector<char32_t> apply_form(const std::string& form, const std::vector<char32_t>& cps) {
  if (form == "lower") {
    std::vector<char32_t> out;
    for (char32_t c : cps) append_lower(out, c);
    return out;
  }
  const NormalForm f = form == "NFC"    ? NormalForm::kNfc
                       : form == "NFD"  ? NormalForm::kNfd
                       : form == "NFKC" ? NormalForm::kNfkc
                                        : NormalForm::kNfkd;
  return normalize(f, cps);
}

uint64_t fnv_update(uint64_t h, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) {
    h ^= (value >> shift) & 0xFF;
    h *= 0x100000001B3ull;
  }
  return h;
}

nlohmann::json fixture() {
  return nlohmann::json::parse(
      test::read_text(test::fixtures_dir() + "/tokenizer/unicode_forms.json"));
}

#if defined(__SANITIZE_ADDRESS__)
#define AF_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AF_TEST_SANITIZED 1
#endif
#endif

TEST(TokenizerUnicode, EveryCodePointMatchesPython) {
#ifdef AF_TEST_SANITIZED
  // 5.5 million normalisations take ~20 s under ASan; this is a data check that the plain
  // build runs in under a second, and the sequence test below exercises the same code.
  GTEST_SKIP() << "data check skipped under sanitizers";
#endif
  const nlohmann::json fx = fixture();
  ASSERT_EQ(fx["unicode_version"].get<std::string>(), std::string(kUnicodeVersion));
  for (const char* form : {"NFC", "NFD", "NFKC", "NFKD", "lower"}) {
    const auto& want = fx["digests"][form];
    ASSERT_EQ(want.size(), 17u);
    std::vector<char32_t> one(1);
    for (uint32_t plane = 0; plane < 17; ++plane) {
      uint64_t h = 0xCBF29CE484222325ull;
      for (char32_t cp = plane << 16; cp < ((plane + 1) << 16); ++cp) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        one[0] = cp;
        for (char32_t c : apply_form(form, one)) h = fnv_update(h, c);
        h = fnv_update(h, 0xFFFFFFFFu);
      }
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
      EXPECT_EQ(std::string(hex), want[plane].get<std::string>()) << form << " plane " << plane;
    }
  }
}

TEST(TokenizerUnicode, SequencesMatchPython) {
  const nlohmann::json fx = fixture();
  ASSERT_GE(fx["strings"].size(), 300u);
  for (const auto& entry : fx["strings"]) {
    const std::vector<char32_t> in = decode_utf8(entry["in"].get<std::string>());
    for (const char* form : {"NFC", "NFD", "NFKC", "NFKD", "lower"}) {
      const std::vector<char32_t> got = apply_form(form, in);
      EXPECT_EQ(encode_utf8(got, 0, got.size()), entry[form].get<std::string>())
          << form << " of \"" << entry["in"].get<std::string>() << "\"";
    }
  }
}

TEST(TokenizerUnicode, NonspacingMarks) {
  EXPECT_TRUE(is_nonspacing_mark(0x301));
  EXPECT_TRUE(is_nonspacing_mark(0x93C));
  EXPECT_FALSE(is_nonspacing_mark(0x903));  // Mc, not Mn
  EXPECT_FALSE(is_nonspacing_mark('a'));
}

// Cluster lengths as Python's `regex` module splits them with \X.
TEST(TokenizerUnicode, GraphemeClusters) {
  const std::vector<std::pair<std::u32string, std::vector<size_t>>> cases = {
      {U"e\u0301x", {2, 1}},
      {U"\r\n\n", {2, 1}},
      {U"\U0001F1E9\U0001F1EA\U0001F1E9\U0001F1EA\U0001F1E9", {2, 2, 1}},
      {U"\U0001F468\u200d\U0001F469\u200d\U0001F467 a", {5, 1, 1}},
      {U"\u1100\u1161\u11A8\u1100", {3, 1}},
      {U"a\u0308b", {2, 1}},
      {U"\u0915\u093f", {2}},
      {U"\U0001F44D\U0001F3FD!", {2, 1}},
      {U"a\u200d\U0001F469", {2, 1}},
  };
  for (const auto& [text, lengths] : cases) {
    const std::vector<char32_t> cps(text.begin(), text.end());
    std::vector<size_t> got;
    for (size_t i = 0; i < cps.size();) {
      const size_t end = grapheme_end(cps, i);
      ASSERT_GT(end, i);
      got.push_back(end - i);
      i = end;
    }
    EXPECT_EQ(got, lengths) << encode_utf8(cps, 0, cps.size());
  }
}

}  // namespace
}  // namespace af::tok::detail
