// Tokenizer against Hugging Face on 2,000 varied strings per tokenizer (several scripts, emoji,
// code, white space runs, long numbers, special-token text, combining marks), recorded by
// tools/tokenizer_make_fixtures.py into tests/fixtures/tokenizer so no Python is needed here.
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af::tok {
namespace {

void check_fixture(const std::string& name, const std::string& tokenizer_rel,
                   bool in_fixtures = false) {
  const std::string fixtures = test::fixtures_dir() + "/tokenizer/";
  const std::string tokenizer_path =
      (in_fixtures ? fixtures : test::testdata_dir() + "/") + tokenizer_rel;
  AF_REQUIRE_TESTDATA(tokenizer_path);
  const auto strings = nlohmann::json::parse(test::read_text(fixtures + "strings.json"));
  const auto expected = nlohmann::json::parse(test::read_text(fixtures + name + ".json"));
  ASSERT_EQ(strings.size(), expected["ids"].size());
  ASSERT_GE(strings.size(), 2000u);
  const auto tok = Tokenizer::load(tokenizer_path);
  size_t encode_ok = 0, decode_ok = 0, reported = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string text = strings[i].get<std::string>();
    const auto want = expected["ids"][i].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok->encode(text, /*add_special=*/false);
    const bool enc = ids == want;
    encode_ok += enc;
    const auto& d = expected["decoded"][i];
    const std::string want_text = d.is_null() ? text : d.get<std::string>();
    const std::string back = tok->decode(want, /*skip_special=*/true);
    const bool dec = back == want_text;
    decode_ok += dec;
    if ((!enc || !dec) && reported++ < 5) {
      ADD_FAILURE() << name << " string " << i << " \"" << text << "\"\n  want " << format_ids(want)
                    << "\n  got  " << format_ids(ids) << "\n  decoded \"" << back << "\" want \""
                    << want_text << "\"";
    }
  }
  if (expected.contains("ids_with_special_first50")) {
    const auto& with_special = expected["ids_with_special_first50"];
    for (size_t i = 0; i < with_special.size(); ++i) {
      EXPECT_EQ(tok->encode(strings[i].get<std::string>(), /*add_special=*/true),
                with_special[i].get<std::vector<int32_t>>())
          << name << " string " << i << " with special tokens";
    }
  }
  EXPECT_EQ(encode_ok, strings.size());
  EXPECT_EQ(decode_ok, strings.size());
  std::printf("[tokenizer] HF fixture %s (%s): encode %zu/%zu, decode %zu/%zu\n", name.c_str(),
              tokenizer_rel.c_str(), encode_ok, strings.size(), decode_ok, strings.size());
}

TEST(TokenizerHfFixtures, Stories260k) {
  check_fixture("stories260k", "models/stories260K-hf/tokenizer.json");
}
TEST(TokenizerHfFixtures, Phi3) { check_fixture("phi3", "tokenizer/hf/phi-3-mini"); }
TEST(TokenizerHfFixtures, Gpt2) { check_fixture("gpt2", "tokenizer/hf/gpt2"); }
TEST(TokenizerHfFixtures, Qwen25) { check_fixture("qwen25", "tokenizer/hf/qwen2.5"); }
// Tiny tokenizers trained with HF tokenizers by tools/tokenizer_make_model_fixtures.py.
TEST(TokenizerHfFixtures, WordPiece) { check_fixture("wordpiece", "models/wordpiece.json", true); }
TEST(TokenizerHfFixtures, Unigram) { check_fixture("unigram", "models/unigram.json", true); }
TEST(TokenizerHfFixtures, UnigramPrecompiledNormalizer) {
  check_fixture("unigram_precompiled", "models/unigram_precompiled.json", true);
}
TEST(TokenizerHfFixtures, UnigramByteFallback) {
  check_fixture("unigram_bytes", "models/unigram_bytes.json", true);
}

}  // namespace
}  // namespace af::tok
