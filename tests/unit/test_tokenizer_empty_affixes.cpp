// BPE tokenizer.json files with continuing_subword_prefix / end_of_word_suffix set to "" (as
// faster-whisper's Whisper tokenizers carry them) load and tokenize like null ones; a real affix is
// still refused as unsupported.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af::tok {
namespace {

std::string bpe_json(const std::string& affix) {
  return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
      "merges": ["a b"], "continuing_subword_prefix": )" +
         affix + R"(, "end_of_word_suffix": )" + affix + "}}";
}

std::string write_temp(const std::string& name, const std::string& body) {
  const std::string p = testing::TempDir() + "/" + name;
  std::ofstream(p, std::ios::binary) << body;
  return p;
}

TEST(TokenizerEmptyAffixes, EmptyStringsActAsNull) {
  const auto empty = Tokenizer::load(write_temp("af_tok_affix_empty.json", bpe_json(R"("")")));
  const auto null = Tokenizer::load(write_temp("af_tok_affix_null.json", bpe_json("null")));
  EXPECT_EQ(empty->encode("abba", false), null->encode("abba", false));
  EXPECT_EQ(empty->encode("ab", false), (std::vector<int32_t>{2}));
  EXPECT_THROW(Tokenizer::load(write_temp("af_tok_affix_set.json", bpe_json(R"("##")"))), Error);
}

}  // namespace
}  // namespace af::tok
