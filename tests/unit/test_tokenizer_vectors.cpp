// Tokenizer against the reference vectors in ../shared/testdata/tokenizer (llama.cpp's .inp/.out
// files and the extra Qwen2.5 set): every case must give the expected ids (no special tokens
// added, special text not parsed) and decode back to its text.
#include <cstdio>
#include <string>
#include <vector>

#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok {
namespace {

using Case = test::VocabCase;

std::vector<Case> read_vectors(const std::string& inp_path, const std::string& out_path) {
  return test::read_vocab_vectors(inp_path, out_path);
}

// Runs every case. Decoding gives back the text, or its NFC form where the tokenizer
// normalises (Qwen2).
void check_vectors(const std::string& tokenizer_path, const std::string& inp,
                   const std::string& out, size_t expected_cases, bool nfc = false,
                   bool check_decode = true) {
  AF_REQUIRE_TESTDATA(tokenizer_path);
  AF_REQUIRE_TESTDATA(inp);
  const auto tok = Tokenizer::load(tokenizer_path);
  const std::vector<Case> cases = read_vectors(inp, out);
  ASSERT_EQ(cases.size(), expected_cases) << inp;
  size_t encode_ok = 0, decode_ok = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::vector<int32_t> ids = tok->encode(c.text, /*add_special=*/false,
                                                 /*parse_special=*/false);
    EXPECT_EQ(ids, c.ids) << "case " << i << " text \"" << c.text << "\"";
    encode_ok += ids == c.ids;
    if (!check_decode) continue;
    const std::string back = tok->decode(c.ids, /*skip_special=*/true);
    const std::string want =
        nfc ? detail::encode_utf8(detail::nfc(detail::decode_utf8(c.text)), 0, SIZE_MAX) : c.text;
    EXPECT_EQ(back, want) << "decode of case " << i;
    decode_ok += back == want;
  }
  std::printf("[tokenizer] %s on %s: encode %zu/%zu, decode round trip %zu/%zu%s\n",
              tokenizer_path.c_str(), out.c_str(), encode_ok, cases.size(), decode_ok, cases.size(),
              check_decode ? "" : " (not checked)");
}

std::string tokdir() { return test::testdata_dir() + "/tokenizer/"; }

TEST(TokenizerVectors, LlamaSpmGguf) {
  const std::string base = tokdir() + "ggml-vocab-llama-spm.gguf";
  check_vectors(base, base + ".inp", base + ".out", 46);
}

TEST(TokenizerVectors, Phi3Gguf) {
  const std::string base = tokdir() + "ggml-vocab-phi-3.gguf";
  check_vectors(base, base + ".inp", base + ".out", 46);
}

TEST(TokenizerVectors, Phi3TokenizerJson) {
  const std::string base = tokdir() + "ggml-vocab-phi-3.gguf";
  check_vectors(tokdir() + "hf/phi-3-mini/tokenizer.json", base + ".inp", base + ".out", 46);
}

TEST(TokenizerVectors, Phi3HfFolderAgainstLlamaSpm) {
  const std::string base = tokdir() + "ggml-vocab-llama-spm.gguf";
  check_vectors(tokdir() + "hf/phi-3-mini", base + ".inp", base + ".out", 46);
}

TEST(TokenizerVectors, Gpt2Gguf) {
  const std::string base = tokdir() + "ggml-vocab-gpt-2.gguf";
  check_vectors(base, base + ".inp", base + ".out", 46);
}

TEST(TokenizerVectors, Gpt2VocabMerges) {
  const std::string base = tokdir() + "ggml-vocab-gpt-2.gguf";
  check_vectors(tokdir() + "hf/gpt2", base + ".inp", base + ".out", 46);
}

// WordPiece (BERT, lower case, accents stripped): decoding cannot give the text back, so only
// the ids are compared here; decoding is checked against HF in the WordPiece fixture test.
TEST(TokenizerVectors, BertBgeGguf) {
  const std::string base = tokdir() + "ggml-vocab-bert-bge.gguf";
  check_vectors(base, base + ".inp", base + ".out", 46, false, false);
  const auto tok = Tokenizer::load(base);
  EXPECT_EQ(tok->encode("Hello world", true), (std::vector<int32_t>{101, 7592, 2088, 102}));
  EXPECT_EQ(tok->decode(tok->encode(" Hello,  World! ", true), true), "hello, world!");
}

TEST(TokenizerVectors, Qwen25VocabMergesExtra) {
  const std::string dir = tokdir() + "hf/qwen2.5/";
  check_vectors(dir, dir + "qwen2.5-extra.inp", dir + "qwen2.5-extra.out", 19, true);
}

}  // namespace
}  // namespace af::tok
