// Malformed tokenizer.json files of the newer kinds (WordPiece, Unigram, split pre-tokenizers,
// normalizers, post-processors): each must raise af::Error from the tokenizer component naming
// the file and the field at fault. And the WordPiece / Unigram models on awkward input.
#include <fstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af::tok {
namespace {

std::string write_temp(const std::string& name, const std::string& body) {
  const std::string p = testing::TempDir() + "/" + name;
  std::ofstream(p, std::ios::binary) << body;
  return p;
}

struct BadCase {
  std::string body;
  std::string field;  // must appear in the message
};

TEST(TokenizerBadInput, MalformedFilesNameTheField) {
  const std::string wp_vocab = R"("vocab": {"[UNK]": 0, "a": 1, "##b": 2})";
  const std::vector<BadCase> cases = {
      {R"({"model": {"type": 7}})", "model.type"},
      {R"({"model": {"type": "Nope", "vocab": {}}})", "Nope"},
      {R"({"model": {"type": "WordPiece", "vocab": {"a": "x"}}})", "model.vocab"},
      {R"({"model": {"type": "WordPiece", "vocab": {"a": 4294967296}}})", "model.vocab"},
      // A huge id must not make the loader allocate a table for two billion entries.
      {R"({"model": {"type": "WordPiece", "vocab": {"a": 2000000000}}})", "2000000000"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 2147483000, "content": "x"}]})",
       "added_tokens[0]"},
      {R"({"model": {"type": "WordPiece", )" + wp_vocab + R"(, "max_input_chars_per_word": -3}})",
       "max_input_chars_per_word"},
      {R"({"model": {"type": "WordPiece", )" + wp_vocab + R"(, "continuing_subword_prefix": 5}})",
       "continuing_subword_prefix"},
      {R"({"model": {"type": "Unigram", "vocab": {"a": 1}}})", "model.vocab"},
      {R"({"model": {"type": "Unigram", "vocab": [["a"]]}})", "model.vocab[0]"},
      {R"({"model": {"type": "Unigram", "vocab": [["a", "x"]]}})", "model.vocab[0]"},
      {R"({"model": {"type": "Unigram", "vocab": [[3, -1.0]]}})", "model.vocab[0]"},
      {R"({"model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 9}})", "unk_id"},
      {R"({"model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": "a"}})", "unk_id"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})",
       "model.merges[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})", "model.merges[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": "a a"}})", "model.merges"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": "1"}]})",
       "added_tokens[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 5000000000, "content": "x"}]})",
       "added_tokens[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"}}})",
       "Split"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": 3}})",
       "behavior"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {}}})",
       "pattern"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": [1]})", "pre_tokenizer"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAA*"}})",
       "precompiled_charsmap"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "/////w=="}})",
       "precompiled_charsmap"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "NFX"}})",
       "normalizer"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Replace", "pattern": {}, "content": "x"}})",
       "normalizer.pattern"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Replace", "pattern": {"Regex": "(("}, "content": "x"}})",
       "Replace"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Sequence", "normalizers": 1}})",
       "normalizer.normalizers"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "post_processor": {"type": "BertProcessing", "cls": ["[CLS]"], "sep": ["[SEP]", 1]}})",
       "post_processor.cls"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 70], "sep": ["[SEP]", 0]}})",
       "70"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "X"}}]}})",
       "post_processor"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string p =
        write_temp("af_tok_bad_input_" + std::to_string(i) + ".json", cases[i].body);
    try {
      (void)Tokenizer::load(p);
      ADD_FAILURE() << "no error for " << cases[i].body;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.component(), "tokenizer") << what;
      EXPECT_NE(what.find(p), std::string::npos) << what;
      EXPECT_NE(what.find(cases[i].field), std::string::npos) << "case " << i << ": " << what;
    }
  }
}

TEST(TokenizerBadInput, WordPieceWithoutUnk) {
  const std::string p = write_temp(
      "af_tok_wp_nounk.json",
      R"({"model": {"type": "WordPiece", "vocab": {"a": 0, "##b": 1}, "unk_token": "[UNK]"},
          "pre_tokenizer": {"type": "WhitespaceSplit"}})");
  const auto tok = Tokenizer::load(p);
  EXPECT_EQ(tok->encode("ab a", false), (std::vector<int32_t>{0, 1, 0}));
  EXPECT_THROW((void)tok->encode("c", false), Error);  // needs unk, and there is none
  EXPECT_THROW((void)tok->decode(std::vector<int32_t>{2}, false), Error);
}

TEST(TokenizerBadInput, WordPieceLongWordAndUnk) {
  const std::string p =
      write_temp("af_tok_wp.json",
                 R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1, "##a": 2, "b": 3},
          "unk_token": "[UNK]", "max_input_chars_per_word": 4},
          "normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true}})");
  const auto tok = Tokenizer::load(p);
  EXPECT_EQ(tok->encode("AAAA aaaaa ab b", false), (std::vector<int32_t>{1, 2, 2, 2, 0, 0, 3}));
  EXPECT_EQ(tok->decode(tok->encode("a aa b", false), false), "a aa b");
  EXPECT_EQ(tok->encode("\xC3\x81", false), (std::vector<int32_t>{1}));  // Á -> a
}

TEST(TokenizerBadInput, UnigramUnknownAndBytes) {
  const std::string p =
      write_temp("af_tok_ug.json",
                 R"({"model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false,
          "vocab": [["<unk>", 0.0], ["\u2581", -2.0], ["a", -1.0], ["ab", -1.5], ["b", -1.0]]},
          "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"}})");
  const auto tok = Tokenizer::load(p);
  // "ab" (-1.5) beats "a" + "b" (-2.0); "xyz" is one fused unknown piece.
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(tok->encode("axyzb", false), (std::vector<int32_t>{1, 2, 0, 4}));
  EXPECT_EQ(tok->encode("", false), (std::vector<int32_t>{}));
}

// single_word and normalized flags of added tokens; expected ids from HF tokenizers 0.23.
TEST(TokenizerBadInput, AddedTokenFlagsAsHf) {
  const std::string p = write_temp("af_tok_added_flags.json", R"({
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100,
              "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "x": 3, "##x": 4, "HeLLo": 5,
                        "WORLD": 6}},
    "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "WhitespaceSplit"},
    "added_tokens": [
      {"id": 5, "content": "HeLLo", "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": true, "special": false},
      {"id": 6, "content": "WORLD", "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": false, "special": false},
      {"id": 3, "content": "x", "single_word": true, "lstrip": false, "rstrip": false,
       "normalized": false, "special": false}]})");
  const auto tok = Tokenizer::load(p);
  using Ids = std::vector<int32_t>;
  EXPECT_EQ(tok->encode("HELLO world", false), (Ids{5, 2}));
  EXPECT_EQ(tok->encode("hello WORLD world", false), (Ids{5, 6, 2}));
  EXPECT_EQ(tok->encode("xhello x", false), (Ids{3, 5, 3}));
  EXPECT_EQ(tok->encode("a x b", false), (Ids{0, 3, 0}));
  EXPECT_EQ(tok->encode("HeLLo", false), (Ids{5}));
  EXPECT_EQ(tok->encode("helloworld", false), (Ids{5, 2}));
  EXPECT_EQ(tok->encode("x_x x", false), (Ids{0, 3}));
  EXPECT_EQ(tok->encode("\xC3\xA9x x1 x", false), (Ids{0, 0, 3}));
}

}  // namespace
}  // namespace af::tok
