#pragma once
// Text <-> token ids, identical to Hugging Face tokenizers (tokenizer.json, vocab.json +
// merges.txt) and to llama.cpp for GGUF vocabularies.
//
// Supported models: SentencePiece-style BPE with byte fallback (Llama 2, Phi-3; GGUF
// tokenizer.ggml.model "llama" or tokenizer.json BPE with byte_fallback), byte-level BPE
// (GPT-2, Qwen2, Llama 3, DeepSeek, Falcon, StarCoder, ...; GGUF "gpt2" with the split regexes
// of tokenizer.ggml.pre, tokenizer.json BPE with ByteLevel / Split pre-tokenizers, or the
// vocab.json + merges.txt pair), WordPiece (BERT; tokenizer.json "WordPiece", GGUF "bert") and
// Unigram (tokenizer.json "Unigram", with SentencePiece's Precompiled normaliser). All errors
// are af::Error with component "tokenizer".
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/error.hpp"

namespace af::io {
class GgufFile;
}

namespace af::tok {

// Thrown by the cancellable Tokenizer::encode when its check asked it to stop.
class Cancelled : public Error {
 public:
  Cancelled() : Error(ErrorCode::kInvalidArgument, "tokenizer", "encoding cancelled") {}
};

class Tokenizer {
 public:
  struct Impl;  // defined in src/tokenizer; the public surface stays small and stable

  // `path` is a .gguf file (its tokenizer.ggml.* metadata), a tokenizer.json, a vocab.json
  // (with merges.txt beside it), or a Hugging Face folder holding tokenizer.json or
  // vocab.json + merges.txt (and optionally tokenizer_config.json for add_bos_token /
  // add_eos_token and the special tokens).
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // The vocabulary of an already opened GGUF file (e.g. ModelFiles::gguf).
  static std::unique_ptr<Tokenizer> from_gguf(const io::GgufFile& gguf);

  explicit Tokenizer(std::unique_ptr<Impl> impl);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text must be valid UTF-8 (otherwise kInvalidArgument naming the byte offset).
  // add_special: BOS/EOS (or the template's special tokens) as the tokenizer's configuration
  // says, like HF's add_special_tokens / llama.cpp's add_special.
  // parse_special: special (control) tokens written in the text become their ids, as Hugging
  // Face always does; false treats them as plain text (llama.cpp's parse_special=false).
  // Non-special added tokens are always matched, as in both references.
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special = true) const;
  // The same, cancellable: `cancelled` is polled on this thread about every 64K code points of
  // work, and once it returns true encode stops and throws tok::Cancelled (e.g. a server whose
  // client went away, or Session::cancel()). An empty function never cancels.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special,
                              const std::function<bool()>& cancelled) const;

  // A byte range [begin, end) of a text.
  struct TextRange {
    size_t begin = 0;
    size_t end = 0;
  };
  // encode(text, add_special, /*parse_special=*/true), except that a special token whose text
  // overlaps one of `plain` stays plain text. For a rendered chat template: the template's own
  // markers become control tokens, the same characters typed in message content (the plain
  // ranges) do not, so content cannot forge turns. The text between added tokens is tokenized
  // as one piece across range edges, so when no content holds special-token text the ids equal
  // encode(text, add_special). kInvalidArgument for a range outside the text. `cancelled` as
  // for encode.
  std::vector<int32_t> encode_with_plain_ranges(std::string_view text, bool add_special,
                                                std::span<const TextRange> plain,
                                                const std::function<bool()>& cancelled = {}) const;

  // Ids back to text. Byte tokens are reassembled; the one leading space that encoding
  // prepended is removed as HF's decoder does. Byte sequences that are not valid UTF-8 become
  // U+FFFD. Unknown ids throw kInvalidArgument.
  std::string decode(std::span<const int32_t> ids, bool skip_special) const;

  // One past the largest id. Loaders allow holes below it (ids no entry has, e.g. between the
  // regular and the added tokens); is_assigned() tells them apart.
  int64_t vocab_size() const;
  // Whether `id` names a vocabulary entry or added token: false for negative ids, ids >=
  // vocab_size() and holes. Every other id-taking member throws kInvalidArgument on such ids.
  bool is_assigned(int32_t id) const;
  int32_t bos_id() const;  // -1 if none
  int32_t eos_id() const;  // -1 if none
  // The vocabulary entry as stored (e.g. "▁the", "Ġthe", "<0x0A>"); throws on unknown ids.
  std::string token_piece(int32_t id) const;
  // Id of a vocabulary entry or added token, -1 if absent.
  int32_t token_id(std::string_view piece) const;
  bool is_special(int32_t id) const;  // control / special added tokens

  // Raw bytes the token contributes to decoded text (may be a partial UTF-8 sequence);
  // `first` applies the leading-space removal of the first decoded token.
  std::string token_bytes(int32_t id, bool first) const;

  const Impl& impl() const { return *impl_; }

 private:
  std::vector<int32_t> encode_ranges(std::string_view text, bool add_special, bool parse_special,
                                     std::span<const TextRange> plain,
                                     const std::function<bool()>& cancelled) const;

  std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming generation: push ids one at a time and get back only
// complete UTF-8 text; a multi-byte character split across tokens is held until complete.
// The concatenation of all push() results and flush() equals Tokenizer::decode of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t id);
  // Emits what is still held (an incomplete sequence at the end becomes U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool started_ = false;  // a token contributed bytes already
  std::string pending_;   // bytes of an incomplete UTF-8 sequence
};

// For `af-cli tokenize` / `detokenize`: the ids as one line separated by spaces (no newline),
// and the parse of such text (whitespace separated integers; kInvalidArgument otherwise).
std::string format_ids(std::span<const int32_t> ids);
std::vector<int32_t> parse_ids(std::string_view text);

}  // namespace af::tok
