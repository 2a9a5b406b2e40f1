// Tokenizer API: loading every supported form, special tokens, decoding, streaming and errors.
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af::tok {
namespace {

using Ids = std::vector<int32_t>;

std::string td(const std::string& rel) { return test::testdata_dir() + "/" + rel; }

TEST(TokenizerApi, Stories260kAllFormsAgree) {
  const std::vector<std::string> paths = {td("models/stories260K/stories260K.gguf"),
                                          td("models/stories260K-hf/tokenizer.json"),
                                          td("models/stories260K-hf")};
  for (const std::string& path : paths) {
    AF_REQUIRE_TESTDATA(path);
    const auto tok = Tokenizer::load(path);
    EXPECT_EQ(tok->vocab_size(), 512) << path;
    EXPECT_EQ(tok->bos_id(), 1) << path;
    EXPECT_EQ(tok->eos_id(), 2) << path;
    EXPECT_EQ(tok->encode("Once upon a time", false), (Ids{403, 407, 261, 378})) << path;
    EXPECT_EQ(tok->encode("Once upon a time", true), (Ids{1, 403, 407, 261, 378})) << path;
    EXPECT_EQ(tok->encode("", true), (Ids{1})) << path;
    EXPECT_TRUE(tok->encode("", false).empty()) << path;
    const Ids with_bos = {1, 403, 407, 261, 378};
    EXPECT_EQ(tok->decode(with_bos, true), "Once upon a time") << path;
    EXPECT_EQ(tok->decode(with_bos, false), "<s> Once upon a time") << path;
    EXPECT_TRUE(tok->is_special(1));
    EXPECT_FALSE(tok->is_special(403));
  }
}

TEST(TokenizerApi, GreedyStoryDecodes) {
  const std::string path = td("models/stories260K/stories260K.gguf");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  const Ids ids = parse_ids(
      "432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 "
      "265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 "
      "337 335 312 432");
  EXPECT_EQ(tok->decode(ids, true),
            ", there was a little girl named Lily. She loved to play outside in the park. One "
            "day, she saw a big, red ball. She wanted to play with it,");
}

TEST(TokenizerApi, FromOpenGgufFile) {
  const std::string path = td("tokenizer/ggml-vocab-llama-spm.gguf");
  AF_REQUIRE_TESTDATA(path);
  const io::GgufFile file = io::GgufFile::open(path);
  const auto tok = Tokenizer::from_gguf(file);
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->token_piece(29871), "\xE2\x96\x81");
  EXPECT_EQ(tok->token_id("<0x0A>"), 13);
  EXPECT_EQ(tok->token_id("no such piece"), -1);
}

TEST(TokenizerApi, Phi3SpecialTokensSplitLikeHf) {
  const std::string path = td("tokenizer/hf/phi-3-mini");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 32000);
  // add_bos_token is false for Phi-3: add_special adds nothing.
  EXPECT_EQ(tok->encode("Hi", true), tok->encode("Hi", false));
  // rstrip on <|user|> swallows the newline, as in HF.
  const Ids ids = tok->encode("<|user|>\nHi<|end|>", false);
  EXPECT_EQ(ids, (Ids{32010, 6324, 32007}));
  EXPECT_EQ(tok->decode(ids, true), "Hi");
  // Decoding follows the tokenizers library (decoder over the fused text): only the very
  // first space is stripped; "</s>" is not special in Phi-3's tokenizer.json.
  EXPECT_EQ(tok->decode(ids, false), "<|user|> Hi<|end|>");
  EXPECT_EQ(tok->decode(Ids{6324, 32010, 6324, 6324}, true), "Hi Hi Hi");
  EXPECT_EQ(tok->decode(Ids{2, 6324}, true), "</s> Hi");
  // parse_special=false keeps the text as text.
  const Ids plain = tok->encode("<|user|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 32010), 0);
  EXPECT_GT(plain.size(), 1u);
}

TEST(TokenizerApi, Qwen25AddedTokensAndIds) {
  const std::string path = td("tokenizer/hf/qwen2.5");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  EXPECT_EQ(tok->vocab_size(), 151665);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), 151645);
  const Ids ids = tok->encode("<|im_start|>user\nHello<|im_end|>", true);
  EXPECT_EQ(ids, (Ids{151644, 872, 198, 9707, 151645}));  // HF AutoTokenizer
  EXPECT_EQ(tok->decode(ids, false), "<|im_start|>user\nHello<|im_end|>");
  EXPECT_EQ(tok->decode(ids, true), "user\nHello");
}

TEST(TokenizerApi, StreamDecoderHoldsSplitCharacters) {
  const std::string path = td("tokenizer/ggml-vocab-llama-spm.gguf");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  // Characters outside the vocabulary are spelled as byte tokens: each of these multi-byte
  // characters arrives over several pushes and must come out whole.
  const std::string text = "a \xF0\x9F\xA6\x99 z \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!";
  const Ids ids = tok->encode(text, true);
  int byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += tok->token_piece(id).rfind("<0x", 0) == 0;
  EXPECT_GE(byte_tokens, 4);
  StreamDecoder stream(*tok);
  std::string joined;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    // Never a partial sequence: each chunk on its own is valid UTF-8 (encode rejects invalid).
    EXPECT_EQ(tok->decode(tok->encode(piece, false), true), piece);
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, text);
  EXPECT_EQ(joined, tok->decode(ids, true));
}

TEST(TokenizerApi, StreamDecoderByteLevel) {
  const std::string path = td("tokenizer/hf/gpt2");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  const std::string text = "Emoji \xF0\x9F\x98\x80\xF0\x9F\x98\x81 and \xE4\xBD\xA0\xE5\xA5\xBD";
  const Ids ids = tok->encode(text, false);
  StreamDecoder stream(*tok);
  std::string joined;
  size_t held = 0;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    held += piece.empty();
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, text);
  EXPECT_GT(held, 0u);  // some tokens end inside a character
}

TEST(TokenizerApi, StreamDecoderFlushesIncompleteTail) {
  const std::string path = td("tokenizer/ggml-vocab-llama-spm.gguf");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  const int32_t e4 = tok->token_id("<0xE4>");
  const int32_t bd = tok->token_id("<0xBD>");
  StreamDecoder stream(*tok);
  EXPECT_EQ(stream.push(e4), "");
  EXPECT_EQ(stream.push(bd), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");  // one U+FFFD for the broken-off sequence
  const Ids ids = {e4, bd};
  EXPECT_EQ(tok->decode(ids, true), "\xEF\xBF\xBD");
  const Ids lone = {tok->token_id("<0xFF>"), tok->token_id("a")};
  EXPECT_EQ(tok->decode(lone, true),
            "\xEF\xBF\xBD"
            "a");
}

TEST(TokenizerApi, Errors) {
  const std::string path = td("tokenizer/ggml-vocab-gpt-2.gguf");
  AF_REQUIRE_TESTDATA(path);
  const auto tok = Tokenizer::load(path);
  const Ids bad = {15496, 50257};
  try {
    (void)tok->decode(bad, false);
    FAIL() << "no error for an unknown id";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tokenizer");
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos) << e.what();
  }
  const Ids negative = {-1};
  EXPECT_THROW((void)tok->decode(negative, false), Error);
  EXPECT_THROW((void)tok->token_piece(1 << 30), Error);
  try {
    (void)tok->encode("ok \xC3\x28", false);
    FAIL() << "no error for invalid UTF-8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::load(td("tokenizer/no-such-file.json")), Error);
  EXPECT_THROW(parse_ids("1 2 x"), Error);
  EXPECT_EQ(parse_ids(" 1\t2\n3 "), (Ids{1, 2, 3}));
  EXPECT_EQ(format_ids(Ids{7, 8, 9}), "7 8 9");
}

TEST(TokenizerApi, MalformedTokenizerJson) {
  const std::string dir = testing::TempDir();
  auto write = [&](const std::string& name, const std::string& body) {
    const std::string p = dir + "/" + name;
    std::ofstream(p, std::ios::binary) << body;
    return p;
  };
  const std::vector<std::string> bodies = {
      "{",
      "[]",
      "{\"model\": {\"type\": \"BPE\", \"vocab\": [1]}}",
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}}}",
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
      "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
  };
  for (size_t i = 0; i < bodies.size(); ++i) {
    const std::string p = write("af_tok_bad_" + std::to_string(i) + ".json", bodies[i]);
    try {
      (void)Tokenizer::load(p);
      ADD_FAILURE() << "no error for " << bodies[i];
    } catch (const Error& e) {
      EXPECT_EQ(e.component(), "tokenizer") << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace af::tok
