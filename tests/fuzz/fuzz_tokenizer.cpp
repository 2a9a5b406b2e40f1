// libFuzzer target: the encoder on arbitrary bytes and the decoders on arbitrary ids, over a
// few real vocabularies (every tokenizer kind). Invalid UTF-8 and unknown ids must raise
// af::Error; crashes, sanitizer reports and other exception types are bugs. Encoding valid
// text must succeed, and decoding its ids must too.
//
// Inputs whose second byte has bit 0x80 set exercise encode_with_plain_ranges instead (the
// chat-prompt entry point): random plain ranges over text into which the input splices the
// vocabulary's special tokens, with its contract as the oracle (see fuzz_plain_ranges).
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
#include "tokenizer/tokenizer_impl.hpp"

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

// ---- encode_with_plain_ranges ----

using Range = af::tok::Tokenizer::TextRange;

// The special added tokens matched in the raw text (normalised ones are matched after
// normalisation, at offsets the oracle cannot map back).
std::vector<std::string> raw_specials(const af::tok::Tokenizer& tok) {
  std::vector<std::string> list;
  for (const af::tok::AddedToken& t : tok.impl().added) {
    if (t.special && !t.normalized && !t.match.empty()) list.push_back(t.match);
  }
  return list;
}

// The input after its header, with each 0x01 k replaced by special token k (mod their count),
// so that special-token text is common rather than left to chance.
std::string splice_specials(std::string_view in, const std::vector<std::string>& specials) {
  std::string text;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\x01' && i + 1 < in.size() && !specials.empty()) {
      text += specials[static_cast<unsigned char>(in[++i]) % specials.size()];
    } else {
      text += in[i];
    }
  }
  return text;
}

// Whether a non-empty range overlaps some occurrence of a special token's text, matched or
// not (a superset of what the encoder may leave plain, so the oracle below stays sound).
bool range_touches_special(std::string_view text, const std::vector<Range>& ranges,
                           const std::vector<std::string>& specials) {
  for (const std::string& s : specials) {
    for (size_t at = text.find(s); at != std::string_view::npos; at = text.find(s, at + 1)) {
      for (const Range& r : ranges) {
        if (r.begin < r.end && r.begin < at + s.size() && at < r.end) return true;
      }
    }
  }
  return false;
}

// Reports which part of the contract broke, with the text and ranges, then aborts.
[[noreturn]] void broken(const char* what, const af::tok::Tokenizer& tok, std::string_view text,
                         const std::vector<Range>& ranges) {
  std::fprintf(stderr, "encode_with_plain_ranges: %s (%s)\ntext (%zu bytes): ", what,
               tok.impl().origin.c_str(), text.size());
  for (unsigned char c : text) std::fprintf(stderr, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
  std::fprintf(stderr, "\nranges:");
  for (const Range& r : ranges) std::fprintf(stderr, " [%zu, %zu)", r.begin, r.end);
  std::fprintf(stderr, "\n");
  std::abort();
}

// Header: data[1] & 7 ranges of 4 bytes each (begin, length: 16 bits each, folded into the
// text); data[1] & 8 adds a range over the whole text. Then the text (splice_specials).
//
// Oracle (Tokenizer::encode_with_plain_ranges' contract): af::Error exactly when encode fails
// (invalid UTF-8); ids that decode; the ids of encode(text, add_special, true) when no range
// overlaps a special token's text; those of encode(text, add_special, false) when one range
// covers the text.
void fuzz_plain_ranges(const af::tok::Tokenizer& tok, const uint8_t* data, size_t size) {
  if (size < 2) return;
  const bool add_special = data[0] & 0x40;
  const size_t n_ranges = data[1] & 7;
  const size_t header = 2 + 4 * n_ranges;
  if (size < header) return;
  const std::vector<std::string> specials = raw_specials(tok);
  const std::string text = splice_specials(
      std::string_view(reinterpret_cast<const char*>(data + header), size - header), specials);
  std::vector<Range> ranges;
  for (size_t k = 0; k < n_ranges; ++k) {
    const uint8_t* p = data + 2 + 4 * k;
    const size_t begin = (p[0] | size_t{p[1]} << 8) % (text.size() + 1);
    const size_t length = (p[2] | size_t{p[3]} << 8) % (text.size() - begin + 1);
    ranges.push_back({begin, begin + length});
  }
  const bool whole = data[1] & 8;
  if (whole) ranges.push_back({0, text.size()});

  std::vector<int32_t> reference;
  try {
    reference = tok.encode(text, add_special, /*parse_special=*/true);
  } catch (const af::Error&) {
    try {
      (void)tok.encode_with_plain_ranges(text, add_special, ranges);
    } catch (const af::Error&) {
      return;  // invalid UTF-8: refused by both
    }
    broken("accepted a text that encode refuses", tok, text, ranges);
  }
  const std::vector<int32_t> ids = tok.encode_with_plain_ranges(text, add_special, ranges);
  (void)tok.decode(ids, false);  // every id is one the tokenizer assigns
  // Normalised special tokens are matched at offsets of the normalised text: for those
  // vocabularies only the range-free case has a precise oracle.
  if ((!tok.impl().has_normalized_added || ranges.empty()) &&
      !range_touches_special(text, ranges, specials) && ids != reference)
    broken("no special token in a plain range, yet ids differ from encode(text)", tok, text,
           ranges);
  if (whole && ids != tok.encode(text, add_special, /*parse_special=*/false))
    broken("all plain, yet ids differ from encode(text, parse_special=false)", tok, text, ranges);
  // Not checked: that the ids decode back to the text. Where plain ranges cover special-token
  // text, a Unigram vocabulary with byte pieces (tests/fixtures/tokenizer/models/
  // unigram_bytes.json) gave ids that decode differently from the text although both whole-text
  // encodings round-trip; found by this fuzzer, not yet understood, noted for the next session.
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
  if (size >= 2 && (data[1] & 0x80)) {
    fuzz_plain_ranges(tok, data, size);
    return 0;
  }
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
