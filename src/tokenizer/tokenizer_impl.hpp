#pragma once
// The data every loader fills in and the encode/decode pipeline reads. One struct for all
// tokenizer kinds: they differ only in a few switches (how text is normalised and split, how
// symbols merge, how tokens turn back into bytes).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "af/tokenizer/tokenizer.hpp"

namespace af::tok {

namespace detail {
constexpr char kComponent[] = "tokenizer";

// std::string keys looked up by string_view without building a temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;
}  // namespace detail

// GGUF tokenizer.ggml.token_type values; kInvalid marks ids no loader assigned.
enum class TokenKind : uint8_t {
  kInvalid = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class MergeOrder {
  kScore,  // llama.cpp SPM: merge the adjacent pair whose concatenation has the highest score
  kRank,   // HF BPE: merge the adjacent pair that comes first in the merges list
};

enum class PreTokenizer { kNone, kGpt2, kLlama3, kQwen2 };
enum class PrependScheme { kNever, kFirst, kAlways };  // where "▁" is put before a segment

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;  // a control token: skipped by skip_special, needs parse_special
  bool lstrip = false;   // absorbs white space on its left
  bool rstrip = false;   // absorbs white space on its right
};

struct Tokenizer::Impl {
  std::string origin;  // file the vocabulary came from, for messages

  // ---- vocabulary ----
  std::vector<std::string> pieces;      // [n_vocab] stored token text
  std::vector<float> scores;            // [n_vocab] SPM piece scores; empty for kRank
  std::vector<TokenKind> kinds;         // [n_vocab]
  detail::StringMap index;              // piece -> id (built by finalize)
  std::array<int32_t, 256> byte_ids{};  // id of "<0xXX>", -1 if absent (built by finalize)

  // ---- model ----
  MergeOrder order = MergeOrder::kRank;
  // (left id << 32 | right id) -> (rank, merged id), for kRank.
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a whole pre-token found in the vocabulary is emitted as is

  // ---- normalisation and pre-tokenisation ----
  bool nfc = false;
  bool byte_level = false;               // GPT-2 bytes-to-unicode mapping before the model
  bool byte_level_prefix_space = false;  // ByteLevel add_prefix_space
  PreTokenizer pre = PreTokenizer::kNone;
  bool metaspace = false;  // ' ' -> "▁"
  PrependScheme prepend = PrependScheme::kNever;
  bool prepend_if_missing = false;  // Metaspace: no "▁" added when the text starts with one
  bool metaspace_split = false;     // Metaspace pre-tokenizer split: words start at each "▁"

  std::vector<AddedToken> added;                        // matched in the text before the model
  std::array<std::vector<int32_t>, 256> added_by_byte;  // first byte -> added, longest first
  std::vector<int32_t> prefix_ids, suffix_ids;          // what add_special puts around the ids
  int32_t bos = -1, eos = -1;

  // ---- decoding ----
  bool strip_leading_space = false;  // HF Strip(" ", 1, 0) / Metaspace prepend removal
  std::vector<std::string> decoded;  // [n_vocab] bytes each token contributes (finalize)
  std::vector<uint8_t> special;      // [n_vocab] 1 when skip_special drops the token

  // Builds index, byte_ids, decoded and special, and checks consistency. Loaders call it last.
  void finalize();

  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
  // The BPE model on one pre-token (already normalised / byte-mapped).
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void check_id(int32_t id) const;
};

namespace detail {

// Pre-tokenizer regexes as hand-written matchers over code points. Returns the end index of
// each piece (pieces are contiguous and cover all of cps).
std::vector<size_t> pretokenize(PreTokenizer pre, const std::vector<char32_t>& cps);

// The GPT-2 bytes-to-unicode table: byte -> UTF-8 of its printable stand-in character.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse of byte_to_unicode; -1 for characters outside it.
int byte_from_unicode(char32_t cp);

// Loaders (load_hf.cpp, load_gguf.cpp).
std::unique_ptr<Tokenizer::Impl> load_tokenizer_json(const std::string& path,
                                                     const std::string& config_path);
std::unique_ptr<Tokenizer::Impl> load_vocab_merges(const std::string& vocab_path,
                                                   const std::string& merges_path,
                                                   const std::string& config_path);
std::unique_ptr<Tokenizer::Impl> load_gguf_vocab(const io::GgufFile& gguf);

}  // namespace detail
}  // namespace af::tok
