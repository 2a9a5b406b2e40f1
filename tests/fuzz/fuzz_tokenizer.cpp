// libFuzzer target: the encoder on arbitrary bytes and the decoders on arbitrary ids, over a
// few real vocabularies (every tokenizer kind). Invalid UTF-8 and unknown ids must raise
// af::Error; crashes, sanitizer reports and other exception types are bugs. Encoding valid
// text must succeed, and decoding its ids must too.
//
// Vocabularies: the paths in AF_FUZZ_TOKENIZERS (separated by ':'), else the ones found under
// AF_TESTDATA (default: ../shared/testdata beside the source tree) and the trained fixtures in
// tests/fixtures/tokenizer/models; if none is found, a small byte-level BPE written to a
// temporary file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace {

std::vector<std::unique_ptr<af::tok::Tokenizer>>& tokenizers() {
  static std::vector<std::unique_ptr<af::tok::Tokenizer>> list;
  return list;
}

std::string source_root() {
  if (const char* env = std::getenv("AF_SOURCE_DIR")) return env;
#ifdef AF_SOURCE_DIR
  return AF_SOURCE_DIR;
#else
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();
#endif
}

void try_load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;
  try {
    tokenizers().push_back(af::tok::Tokenizer::load(path));
  } catch (const af::Error&) {
  }
}

void load_fallback() {
  const std::string path = std::filesystem::temp_directory_path().string() + "/af_fuzz_tokenizer_" +
                           std::to_string(getpid()) + ".json";
  {
    std::ofstream out(path);
    out << R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<0x61>":3,"<unk>":4},)"
        << R"("merges":["a b"],"unk_token":"<unk>","byte_fallback":true},)"
        << R"("added_tokens":[{"id":4,"content":"<unk>","special":true}],)"
        << R"("pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Isolated"}})";
  }
  try_load(path);
  std::filesystem::remove(path);
}

int32_t read_i32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return static_cast<int32_t>(v);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* list = std::getenv("AF_FUZZ_TOKENIZERS")) {
    std::string s = list;
    for (size_t begin = 0; begin <= s.size();) {
      const size_t end = s.find(':', begin) == std::string::npos ? s.size() : s.find(':', begin);
      if (end > begin) try_load(s.substr(begin, end - begin));
      begin = end + 1;
    }
  } else {
    const char* env = std::getenv("AF_TESTDATA");
    const std::string data = env ? env : source_root() + "/../shared/testdata";
    for (const char* rel :
         {"/tokenizer/ggml-vocab-llama-spm.gguf", "/tokenizer/ggml-vocab-gpt-2.gguf",
          "/tokenizer/ggml-vocab-bert-bge.gguf", "/tokenizer/hf/qwen2.5",
          "/tokenizer/hf/phi-3-mini/tokenizer.json"})
      try_load(data + rel);
    for (const char* name : {"wordpiece", "unigram", "unigram_bytes", "unigram_precompiled"})
      try_load(source_root() + "/tests/fixtures/tokenizer/models/" + name + ".json");
  }
  if (tokenizers().empty()) load_fallback();
  std::fprintf(stderr, "fuzz_tokenizer: %zu vocabularies\n", tokenizers().size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || tokenizers().empty()) return 0;
  const af::tok::Tokenizer& tok = *tokenizers()[data[0] % tokenizers().size()];
  const bool add_special = data[0] & 0x40;
  const bool parse_special = data[0] & 0x80;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  // Encode: invalid UTF-8 is an af::Error; valid text always encodes and decodes.
  std::vector<int32_t> ids;
  bool valid = true;
  try {
    ids = tok.encode(text, add_special, parse_special);
  } catch (const af::Error&) {
    valid = false;
  }
  if (valid) {
    (void)tok.decode(ids, true);
    af::tok::StreamDecoder stream(tok, false);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != tok.decode(ids, false)) std::abort();  // the documented contract
  }

  // The same bytes as ids (4 bytes each): unknown ids must be af::Error, never a crash.
  std::vector<int32_t> raw;
  for (size_t i = 1; i + 4 <= size; i += 4) {
    const int32_t v = read_i32(data + i);
    // Mostly ids inside the vocabulary, sometimes anything.
    raw.push_back((v & 0x100) ? v
                              : static_cast<int32_t>(static_cast<uint32_t>(v) %
                                                     static_cast<uint32_t>(tok.vocab_size())));
  }
  try {
    (void)tok.decode(raw, data[0] & 1);
  } catch (const af::Error&) {
  }
  try {
    af::tok::StreamDecoder stream(tok, data[0] & 2);
    for (int32_t id : raw) (void)stream.push(id);
    (void)stream.flush();
  } catch (const af::Error&) {
  }
  return 0;
}
