// Pre-tokenizers against HF tokenizers (tools/tokenizer_make_model_fixtures.py recorded a
// digest of HF's piece offsets for each of the 2,000 strings): tokenizer.json pre_tokenizer
// objects, and llama.cpp's tokenizer.ggml.pre regex lists run through PCRE2. Also: the
// hand-written matchers equal PCRE2 running their regex, on those strings and random ones.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "test_util.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok::detail {
namespace {

uint32_t fnv32(const std::vector<Span>& spans) {
  uint32_t h = 0x811C9DC5u;
  auto add = [&](uint32_t v) {
    for (int shift = 0; shift < 32; shift += 8) h = (h ^ ((v >> shift) & 0xFF)) * 0x01000193u;
  };
  for (auto [b, e] : spans) {
    add(static_cast<uint32_t>(b));
    add(static_cast<uint32_t>(e));
  }
  return h;
}

std::vector<std::vector<char32_t>> fixture_strings() {
  const auto strings =
      nlohmann::json::parse(test::read_text(test::fixtures_dir() + "/tokenizer/strings.json"));
  std::vector<std::vector<char32_t>> out;
  for (const auto& s : strings) out.push_back(decode_utf8(s.get<std::string>()));
  return out;
}

const nlohmann::json& fixture() {
  static const nlohmann::json fx = nlohmann::json::parse(
      test::read_text(test::fixtures_dir() + "/tokenizer/pretokenizers.json"));
  return fx;
}

// Returns how many strings give HF's pieces; reports the first few that do not.
size_t count_matching(const std::string& name, const std::vector<PreSplit>& steps,
                      const std::string& digests) {
  const auto strings = fixture_strings();
  EXPECT_EQ(digests.size(), strings.size() * 8) << name;
  size_t ok = 0, reported = 0;
  for (size_t i = 0; i < strings.size() && (i + 1) * 8 <= digests.size(); ++i) {
    const auto spans = apply_splits(steps, strings[i], {{0, strings[i].size()}});
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", fnv32(spans));
    if (digests.compare(i * 8, 8, hex) == 0) {
      ++ok;
    } else if (reported++ < 3) {
      ADD_FAILURE() << name << ": string " << i << " \""
                    << encode_utf8(strings[i], 0, strings[i].size()) << "\" splits differently";
    }
  }
  std::printf("[tokenizer] pre-tokenizer %s: %zu/%zu strings as HF\n", name.c_str(), ok,
              strings.size());
  return ok;
}

TEST(TokenizerPreTokenizers, TokenizerJsonSpecsMatchHf) {
  const auto& specs = fixture()["specs"];
  ASSERT_GE(specs.size(), 10u);
  for (const auto& [name, spec] : specs.items()) {
    const auto steps = splits_from_json(spec["pre_tokenizer"].dump(), name);
    EXPECT_EQ(count_matching(name, steps, spec["offsets"].get<std::string>()), 2000u) << name;
  }
}

TEST(TokenizerPreTokenizers, GgufPreNamesMatchHf) {
  const auto& names = fixture()["gguf_pre"];
  ASSERT_GE(names.size(), 13u);
  for (const auto& [name, entry] : names.items()) {
    const auto steps = splits_for_gguf_pre(name, "test");
    const auto patterns = entry["patterns"].get<std::vector<std::string>>();
    ASSERT_EQ(steps.size(), patterns.size()) << name;
    for (size_t k = 0; k < steps.size(); ++k) {
      if (steps[k].kind == SplitKind::kRegex) {
        EXPECT_EQ(steps[k].regex->pattern(), patterns[k]) << name << " step " << k;
      }
    }
    EXPECT_EQ(count_matching("gguf " + name, steps, entry["offsets"].get<std::string>()), 2000u)
        << name;
  }
}

TEST(TokenizerPreTokenizers, UnknownGgufPreName) {
  EXPECT_TRUE(splits_for_gguf_pre("no-such-pre", "test").empty());
}

// Random text over the characters the patterns care about: letters of several scripts,
// digits, apostrophes and contraction letters, punctuation, every kind of white space.
std::vector<char32_t> random_text(std::mt19937& rng) {
  static const std::u32string pool =
      U"aAsStTdDmMlLrReEvV'\u2019 \t\n\r\u000b\u000c\u0085\u00a0\u2009\u3000\u2028"
      U"0123456789\u0661\u00bd\u2167.,!?;:-_()[]{}<>/\\\"#$%&*+=@^`|~"
      U"\u00e9\u00df\u0416\u03a9\u4e2d\u3042\uac00\u0301\u0903\U0001F600\u200d\u00ad";
  std::uniform_int_distribution<size_t> len(0, 24), pick(0, pool.size() - 1);
  std::vector<char32_t> s(len(rng));
  for (char32_t& c : s) c = pool[pick(rng)];
  return s;
}

TEST(TokenizerPreTokenizers, HandMatchersEqualPcre2) {
  const std::vector<std::pair<SplitKind, std::string>> cases = {
      {SplitKind::kGpt2,
       R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"},
      {SplitKind::kLlama3,
       R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
      {SplitKind::kQwen2,
       R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
  };
  auto strings = fixture_strings();
  std::mt19937 rng(42);
  for (int k = 0; k < 3000; ++k) strings.push_back(random_text(rng));
  for (const auto& [kind, pattern] : cases) {
    PreSplit hand, regex;
    hand.kind = kind;
    regex.regex = std::make_shared<Regex>(pattern, "test");
    size_t same = 0;
    for (const auto& s : strings) {
      const auto a = apply_splits({hand}, s, {{0, s.size()}});
      const auto b = apply_splits({regex}, s, {{0, s.size()}});
      same += a == b;
      if (a != b)
        ADD_FAILURE() << pattern << " differs on \"" << encode_utf8(s, 0, s.size()) << "\"";
    }
    EXPECT_EQ(same, strings.size());
  }
}

TEST(TokenizerPreTokenizers, BadPatternIsAnError) {
  EXPECT_THROW(Regex("(unclosed", "test"), Error);
  EXPECT_THROW(splits_from_json(
                   R"({"type":"Split","pattern":{"Regex":"[a-"},"behavior":"Isolated"})", "test"),
               Error);
  EXPECT_THROW(
      splits_from_json(R"({"type":"Split","pattern":{"Regex":"a"},"behavior":"Sideways"})", "test"),
      Error);
  EXPECT_THROW(splits_from_json(R"({"type":"Nope"})", "test"), Error);
  EXPECT_THROW(splits_from_json(R"({"type":"Sequence","pretokenizers":5})", "test"), Error);
}

}  // namespace
}  // namespace af::tok::detail
