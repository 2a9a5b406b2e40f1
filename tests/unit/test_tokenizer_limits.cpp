// Tokenizer work and memory bounds on hostile input (hardening issue 21, items 4, 10, 12):
// pre-tokenisation linear on long runs of every character class, WordPiece / Unigram bounded
// by the longest vocabulary entry, a catastrophic split / Replace regex stopped by the work
// budget, cancellable encoding, and the peak memory of one encode per input byte.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"
#include "tokenizer/tokenizer_impl.hpp"

// Heap accounting for the memory test: counts only while `g_tracking` is set (malloc_usable_size
// on both sides, so what is added is what is taken off).
namespace {
std::atomic<bool> g_tracking{false};
std::atomic<long long> g_current{0}, g_peak{0};

void* counted_alloc(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  if (g_tracking.load(std::memory_order_relaxed)) {
    const long long now = g_current += static_cast<long long>(malloc_usable_size(p));
    long long peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
  }
  return p;
}
void counted_free(void* p) {
  if (p == nullptr) return;
  if (g_tracking.load(std::memory_order_relaxed))
    g_current -= static_cast<long long>(malloc_usable_size(p));
  std::free(p);
}
}  // namespace

// Sanitizer builds keep their own operator new/delete (they check that the two match); the
// memory test is skipped there.
#if defined(__SANITIZE_ADDRESS__)
#define AF_COUNTING_NEW 0
#else
#define AF_COUNTING_NEW 1
#endif
#if AF_COUNTING_NEW
void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& tag) noexcept { return operator new(n, tag); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
#endif

namespace af::tok {
namespace {

using detail::Span;
using tok::PreSplit;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string write_temp(const std::string& name, const std::string& body) {
  const std::string p = testing::TempDir() + "/" + name;
  std::ofstream(p, std::ios::binary) << body;
  return p;
}

const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A text of n code points repeating `unit`.
std::vector<char32_t> repeat(const std::u32string& unit, size_t n) {
  std::vector<char32_t> out;
  out.reserve(n);
  while (out.size() < n) out.push_back(unit[out.size() % unit.size()]);
  return out;
}

// Best of three: the machine running the tests may be busy.
double split_seconds(const PreSplit& step, const std::vector<char32_t>& text, size_t& pieces) {
  double best = 1e9;
  for (int k = 0; k < 3; ++k) {
    const auto t = Clock::now();
    pieces = detail::apply_splits({step}, text, {{0, text.size()}}).size();
    best = std::min(best, seconds_since(t));
  }
  return best;
}

// Before the fix a run of n digits cost n^2 / 6 scans in the Llama 3 matcher and n^2 / 2 in
// the Qwen2 one: 160 KB of digits took 101 s in af-cli.
TEST(TokenizerLimits, PreTokenizersAreLinearOnLongRuns) {
  const std::vector<std::pair<std::string, std::u32string>> runs = {
      {"digits", U"1"},     {"spaces", U" "},         {"letters", U"a"},
      {"punct", U"!"},      {"newlines", U"\n"},      {"space-newline", U" \n"},
      {"mixed", U"1 a!\n"}, {"digits-space", U"12 "}, {"cjk-digits", U"\u4e001\u0661"},
      {"upper", U"A"},      {"cjk", U"\u6587"},       {"upper-lower", U"Aa"},
  };
  std::vector<std::pair<std::string, PreSplit>> steps;
  for (auto kind : {SplitKind::kGpt2, SplitKind::kLlama3, SplitKind::kQwen2}) {
    PreSplit s;
    s.kind = kind;
    steps.emplace_back("hand " + std::to_string(static_cast<int>(kind)), s);
  }
  PreSplit regex;
  regex.regex = std::make_shared<detail::Regex>(kLlama3Pattern, "test");
  steps.emplace_back("pcre2 llama3", regex);
  // llama.cpp's regex lists, through PCRE2 (one step each, with the work budget).
  for (const char* name : {"deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "starcoder",
                           "bloom", "viking", "tekken", "gpt-4o", "default"}) {
    const auto list = detail::splits_for_gguf_pre(name, "test");
    ASSERT_FALSE(list.empty()) << name;
    for (size_t k = 0; k < list.size(); ++k)
      steps.emplace_back(std::string(name) + " step " + std::to_string(k), list[k]);
  }

  for (const auto& [step_name, step] : steps) {
    // 40K and 160K code points for the Llama 3 / Qwen2 patterns, a quarter for the others.
    const size_t n =
        step.kind == SplitKind::kRegex && step.regex->pattern() != kLlama3Pattern ? 10000 : 40000;
    for (const auto& [run_name, unit] : runs) {
      size_t pieces_n = 0, pieces_4n = 0;
      double t_n = split_seconds(step, repeat(unit, n), pieces_n);
      double t_4n = split_seconds(step, repeat(unit, 4 * n), pieces_4n);
      // Linear: 4x the text costs about 4x (quadratic would be 16x, and seconds, not
      // milliseconds). A busy machine can stall one measurement, so a miss is measured again and
      // the fastest of three attempts of each size counts.
      const auto linear = [&] { return t_4n < std::max(10.0 * t_n, 0.25); };
      for (int attempt = 1; attempt < 3 && !linear(); ++attempt) {
        t_n = std::min(t_n, split_seconds(step, repeat(unit, n), pieces_n));
        t_4n = std::min(t_4n, split_seconds(step, repeat(unit, 4 * n), pieces_4n));
      }
      const std::string what = step_name + " on " + run_name;
      EXPECT_GT(pieces_4n, 0u) << what;
      EXPECT_TRUE(linear()) << what << ": " << t_n << " s -> " << t_4n;
      EXPECT_LT(t_4n, 2.0 * af::test::time_scale()) << what;
    }
  }
}

TEST(TokenizerLimits, DigitRunsStillSplitInThrees) {
  PreSplit llama3, qwen2;
  llama3.kind = SplitKind::kLlama3;
  qwen2.kind = SplitKind::kQwen2;
  const auto text = repeat(U"7", 160000);
  const auto t = Clock::now();
  const auto a = detail::apply_splits({llama3}, text, {{0, text.size()}});
  const auto b = detail::apply_splits({qwen2}, text, {{0, text.size()}});
  EXPECT_LT(seconds_since(t), 3.0 * af::test::time_scale());
  ASSERT_EQ(a.size(), 53334u);  // 53333 threes and one 1
  ASSERT_EQ(b.size(), 160000u);
  for (size_t i = 0; i + 1 < a.size(); ++i) ASSERT_EQ(a[i], Span(3 * i, 3 * i + 3));
  EXPECT_EQ(a.back(), Span(159999, 160000));
}

// One vocabulary entry of 8,000 characters made WordPiece and Unigram cubic (12.4 s): each
// position looked up every length up to the longest entry, hashing each candidate.
TEST(TokenizerLimits, LongVocabularyEntryKeepsModelsFast) {
  const std::string long_entry(8000, 'a');
  const std::string wp = write_temp(
      "af_tok_wp_long.json",
      R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "max_input_chars_per_word": 1000000,
          "vocab": {"[UNK]": 0, "a": 1, "##a": 2, "##b": 3, ")" +
          long_entry + R"(": 4}}, "pre_tokenizer": {"type": "WhitespaceSplit"}})");
  const std::string ug = write_temp(
      "af_tok_ug_long.json",
      R"({"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0], ["b", -1.0], [")" +
          long_entry + R"(", -1.0]]}})");
  const auto wordpiece = Tokenizer::load(wp);
  const auto unigram = Tokenizer::load(ug);
  // Long words of 'b': nothing matches beyond one byte, the old code still tried 8,000
  // lengths per position.
  const std::string bs(20000, 'b');
  auto t = Clock::now();
  EXPECT_EQ(unigram->encode(bs, false).size(), 20000u);
  const std::vector<int32_t> wp_ids = wordpiece->encode("a" + bs.substr(0, 8000), false);
  EXPECT_EQ(wp_ids.size(), 8001u);
  EXPECT_EQ(wp_ids.back(), 3);
  // The long entry itself, found as one piece; Unigram finds all entries in one Aho-Corasick
  // pass (a walk from each position would cost 32,000 x 8,000 steps here).
  std::string entries;
  for (int k = 0; k < 4; ++k) entries += long_entry + "b";
  EXPECT_EQ(unigram->encode(entries, false), (std::vector<int32_t>{3, 2, 3, 2, 3, 2, 3, 2}));
  EXPECT_EQ(wordpiece->encode(long_entry + "b", false), (std::vector<int32_t>{4, 3}));
  EXPECT_LT(seconds_since(t), 3.0 * af::test::time_scale());
}

// A catastrophic split regex paid PCRE2's match limit (10M steps) again at every start
// position: 4.6 KB took 4.7 s. The work budget per input now stops it with a clear error.
TEST(TokenizerLimits, CatastrophicRegexHitsTheBudget) {
  const std::string pattern = R"((?:a?){18}a{18}c|b)";
  const std::string split = write_temp(
      "af_tok_catastrophic_split.json",
      R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}},
          "pre_tokenizer": {"type": "Split", "pattern": {"Regex": ")" +
          pattern + R"("}, "behavior": "Isolated"}})");
  const std::string replace = write_temp(
      "af_tok_catastrophic_replace.json",
      R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}},
          "normalizer": {"type": "Replace", "pattern": {"Regex": ")" +
          pattern + R"("}, "content": "x"}})");
  const std::string text(4600, 'a');
  for (const std::string& path : {split, replace}) {
    const auto tok = Tokenizer::load(path);
    const auto t = Clock::now();
    try {
      (void)tok->encode(text, false);
      ADD_FAILURE() << path << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("catastrophic backtracking"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    }
    EXPECT_LT(seconds_since(t), 3.0 * af::test::time_scale()) << path;
  }
}

// Patterns that backtrack over a long run once per run (not per position) stay within the
// budget and still find the same matches as an unbounded search.
TEST(TokenizerLimits, RegexBudgetKeepsLegitimateBacktracking) {
  detail::Regex re(R"(\s*[\r\n]+|\s+(?!\S)|\s+|x)", "test");
  std::vector<char32_t> text(1000000, U' ');
  text.push_back(U'x');
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(text.data(), text.size(), m);
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{
                   {0, 999999}, {999999, 1000000}, {1000000, 1000001}}));
}

TEST(TokenizerLimits, EncodeIsCancellable) {
  const std::string p = write_temp(
      "af_tok_cancel.json",
      R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "1": 1}},
          "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Isolated"}})");
  const auto tok = Tokenizer::load(p);
  const std::string text(2000000, '1');
  int calls = 0;
  const auto t = Clock::now();
  EXPECT_THROW((void)tok->encode(text, false, true, [&] { return ++calls >= 2; }), Cancelled);
  EXPECT_EQ(calls, 2);
  EXPECT_LT(seconds_since(t), 3.0 * af::test::time_scale());
  // A check that never fires changes nothing.
  calls = 0;
  const auto ids = tok->encode(text.substr(0, 300000), false, true, [&] {
    ++calls;
    return false;
  });
  EXPECT_EQ(ids, tok->encode(text.substr(0, 300000), false));
  EXPECT_GT(calls, 0);
  // No check, or an empty one, never cancels.
  EXPECT_EQ(tok->encode("11", false, true, {}), (std::vector<int32_t>{1, 1}));
}

// Item 10: eight concurrent 8 MB prompts peaked at 2.35 GB. One encode's heap peak per input
// byte (ids included) on the texts that cut the most pieces.
TEST(TokenizerLimits, EncodeMemoryPerInputByte) {
  if (!AF_COUNTING_NEW) GTEST_SKIP() << "heap counting is off in sanitizer builds";
  const std::string path = test::testdata_dir() + "/tokenizer/hf/qwen2.5";
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  // (name, text, bound): a run of punctuation is one pre-token of 1 MB, which BPE holds as
  // symbols (20 bytes each) and a heap of candidate merges (16 bytes each, up to 1.25 per byte).
  struct Case {
    std::string name, text;
    double bound;
  };
  const std::vector<Case> texts = {
      {"digits", std::string(1 << 20, '5'), 20},
      {"prose",
       [] {
         std::string s;
         while (s.size() < (1u << 20)) s += "The quick brown fox, 42 times! Ünïcödé 文字. ";
         return s;
       }(),
       20},
      {"punct", std::string(1 << 20, '!'), 56},
  };
  for (const auto& [name, text, bound] : texts) {
    g_current = 0;
    g_peak = 0;
    g_tracking = true;
    size_t n_ids = 0;
    {
      const auto ids = tok->encode(text, false);
      n_ids = ids.size();
    }
    g_tracking = false;
    const double per_byte = double(g_peak.load()) / double(text.size());
    std::printf("[tokenizer] encode peak heap on 1 MB of %s: %.1f bytes per input byte (%zu ids)\n",
                name.c_str(), per_byte, n_ids);
    EXPECT_LT(per_byte, bound) << name;
  }
}

}  // namespace
}  // namespace af::tok
