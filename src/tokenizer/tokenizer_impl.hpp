#pragma once
// The data every loader fills in and the encode/decode pipeline reads. One struct for all
// tokenizer kinds: they differ only in a few switches (how text is normalised and split, how
// symbols merge, how tokens turn back into bytes).
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "af/tokenizer/tokenizer.hpp"
#include "tokenizer/regex.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok {

namespace detail {
constexpr char kComponent[] = "tokenizer";

// std::string keys looked up by string_view without building a temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id): the BPE merge table, the hottest lookup of
// encoding. Open addressing over a power-of-two table with a multiplicative hash; about
// twice as fast as std::unordered_map here.
class MergeMap {
 public:
  using Value = std::pair<int32_t, int32_t>;
  static uint64_t key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  void reserve(size_t n) {
    if (2 * n > keys_.size()) rehash(n);
  }
  // Keeps the first value stored for a key (like std::unordered_map::emplace).
  void emplace(uint64_t k, Value v) {
    if (2 * (size_ + 1) > keys_.size()) rehash(size_ + 1);
    size_t i = slot(k);
    while (keys_[i] != kEmpty) {
      if (keys_[i] == k) return;
      i = (i + 1) & mask_;
    }
    keys_[i] = k;
    values_[i] = v;
    ++size_;
  }
  const Value* find(uint64_t k) const {
    if (size_ == 0) return nullptr;
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (keys_[i] == k) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);  // ids are below 2^31: never a key
  size_t slot(uint64_t k) const {
    return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 20) & mask_;
  }
  void rehash(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    std::vector<uint64_t> old_keys(cap, kEmpty);
    std::vector<Value> old_values(cap);
    old_keys.swap(keys_);
    old_values.swap(values_);
    mask_ = cap - 1;
    size_ = 0;
    for (size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i] != kEmpty) emplace(old_keys[i], old_values[i]);
  }
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  size_t mask_ = 0, size_ = 0;
};

// A byte trie over the vocabulary, for the models that try every vocabulary entry starting at
// a position (WordPiece, Unigram). Walking the text one byte at a time finds them all in
// O(longest match); looking each candidate length up in a hash map costs O(length^2) per
// position, which one long hostile entry turns into minutes. With its Aho-Corasick links
// (link()), one pass finds every entry in a text in O(text + entries found), however long
// the entries.
class PieceTrie {
 public:
  static constexpr int32_t kRoot = 0;
  void clear() { *this = PieceTrie(); }
  // A repeated piece: the last id inserted wins (as in Impl::index).
  void insert(std::string_view piece, int32_t id) {
    int32_t node = kRoot;
    for (unsigned char b : piece) {
      const int32_t next = child(node, b);
      if (next >= 0) {
        node = next;
        continue;
      }
      const int32_t created = static_cast<int32_t>(ids_.size());
      ids_.push_back(-1);
      depth_.push_back(depth_[node] + 1);
      edges_.emplace(edge(node, b), {created, 0});
      edge_list_.push_back({node, created, b});
      node = created;
    }
    ids_[node] = id;
  }
  // Builds the suffix (failure) and dictionary links, after the last insert.
  void link() {
    const size_t n = ids_.size();
    fail_.assign(n, kRoot);
    dict_.assign(n, -1);
    // Nodes were created after their parents but not in depth order: sort the edges by depth
    // so that a node's suffix link (always shallower) is known before its children's.
    std::stable_sort(edge_list_.begin(), edge_list_.end(),
                     [&](const Edge& a, const Edge& b) { return depth_[a.to] < depth_[b.to]; });
    for (const Edge& e : edge_list_) {
      int32_t f = kRoot;
      if (e.from != kRoot) {
        f = fail_[e.from];
        while (child(f, e.byte) < 0 && f != kRoot) f = fail_[f];
        f = std::max(child(f, e.byte), kRoot);
      }
      fail_[e.to] = f;
      dict_[e.to] = (f != kRoot && ids_[f] >= 0) ? f : dict_[f];  // an empty entry never counts
    }
    edge_list_.clear();
    edge_list_.shrink_to_fit();
  }
  // The node after byte b from `node`, or -1.
  int32_t child(int32_t node, unsigned char b) const {
    const MergeMap::Value* v = edges_.find(edge(node, b));
    return v ? v->first : -1;
  }
  // The node reached from `node` by the bytes of s, or -1.
  int32_t walk(int32_t node, std::string_view s) const {
    for (size_t i = 0; i < s.size() && node >= 0; ++i)
      node = child(node, static_cast<unsigned char>(s[i]));
    return node;
  }
  int32_t id(int32_t node) const { return ids_[node]; }  // -1: no entry ends here

  // Calls on_match(end, length, id) for every entry occurring in text, by end, and at one end
  // longest first; then on_end(end) once the matches ending there are done. Needs link().
  template <class OnMatch, class OnEnd>
  void for_each_occurrence(std::string_view text, OnMatch&& on_match, OnEnd&& on_end) const {
    int32_t node = kRoot;
    for (size_t i = 0; i < text.size(); ++i) {
      const auto b = static_cast<unsigned char>(text[i]);
      int32_t next = child(node, b);
      while (next < 0 && node != kRoot) {
        node = fail_[node];
        next = child(node, b);
      }
      node = std::max(next, kRoot);
      for (int32_t m = (node != kRoot && ids_[node] >= 0) ? node : dict_[node]; m >= 0;
           m = dict_[m])
        on_match(i + 1, static_cast<size_t>(depth_[m]), ids_[m]);
      on_end(i + 1);
    }
  }

 private:
  struct Edge {
    int32_t from, to;
    unsigned char byte;
  };
  // The node goes in the low half: MergeMap's hash spreads the right id, and a chain of nodes
  // under one byte would otherwise share a handful of slots.
  static uint64_t edge(int32_t node, unsigned char b) { return MergeMap::key(b, node); }
  MergeMap edges_;                // (node, byte) -> (child, unused)
  std::vector<int32_t> ids_{-1};  // entry ending at the node, or -1
  std::vector<int32_t> depth_{0};
  std::vector<int32_t> fail_, dict_;  // longest proper suffix node; nearest suffix entry node
  std::vector<Edge> edge_list_;       // until link()
};
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

enum class ModelKind { kBpe, kWordPiece, kUnigram };

enum class PreTokenizer { kNone, kGpt2, kLlama3, kQwen2 };
enum class PrependScheme { kNever, kFirst, kAlways };  // where "▁" is put before a segment

// One normalisation step, applied in order to the code points of each segment.
enum class NormStep : uint8_t {
  kNfc,
  kNfd,
  kNfkc,
  kNfkd,
  kLowercase,
  kStripAccents,      // HF StripAccents: drops combining marks (general category M)
  kBertCleanText,     // drops NUL, U+FFFD and control characters, white space -> ' '
  kBertChinese,       // CJK ideographs get a space on each side
  kBertStripAccents,  // NFD, then drops nonspacing marks (Mn)
  kPrecompiled,       // SentencePiece's precompiled charsmap (T5, ALBERT, XLM-R, ...)
  kReplace            // HF Replace: the next entry of Impl::replace_rules
};

// HF's Replace normaliser: every match of a pattern (a literal string or a regex) becomes
// `content`.
struct ReplaceRule {
  std::shared_ptr<const detail::Regex> pattern;
  std::vector<char32_t> content;
};

// SentencePiece's precompiled normalisation map: a darts-clone double array over UTF-8 byte
// strings whose values are offsets of NUL-terminated replacements in `replacements`.
struct PrecompiledCharsmap {
  std::vector<uint32_t> units;
  std::string replacements;
  // Parses the serialized map (uint32 LE size of the array in bytes, the array, the
  // replacement strings); throws kFormat naming `origin` when it is inconsistent.
  static PrecompiledCharsmap parse(std::string_view blob, const std::string& origin);
  // The replacement of the shortest prefix of `text` that the map holds, or nullptr.
  const char* lookup(std::string_view text, size_t& replacement_len) const;
};

// How one pre-tokenizer step cuts the pieces it is given, as HF's Split / Digits /
// Punctuation / Whitespace / BertPreTokenizer do (SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class SplitKind {
  kGpt2,  // hand-written matchers for the hottest patterns (proven equal to the regex)
  kLlama3,
  kQwen2,
  kRegex,        // any pattern, through PCRE2
  kWhiteSpace,   // Unicode White_Space characters (WhitespaceSplit, BERT)
  kPunctuation,  // ASCII punctuation or general category P (BERT, Punctuation)
  kDigits,       // general category N (Digits)
};
struct PreSplit {
  SplitKind kind = SplitKind::kRegex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  std::shared_ptr<const detail::Regex> regex;  // kRegex only
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // a control token: skipped by skip_special, needs parse_special
  bool lstrip = false;       // absorbs white space on its left
  bool rstrip = false;       // absorbs white space on its right
  bool single_word = false;  // only matched when no word character touches it
  bool normalized = false;   // matched in the normalised text (HF), not the raw input
  std::string match;         // the text looked for: content, normalised when `normalized`
};

struct Tokenizer::Impl {
  std::string origin;  // file the vocabulary came from, for messages
  // Loaders refuse ids at or above this, so that a hostile file cannot make them allocate a
  // table for ids far beyond its entries.
  int64_t id_limit = int64_t(1) << 31;

  // ---- vocabulary ----
  std::vector<std::string> pieces;      // [n_vocab] stored token text
  std::vector<float> scores;            // [n_vocab] SPM piece scores; empty for kRank
  std::vector<TokenKind> kinds;         // [n_vocab]
  detail::StringMap index;              // piece -> id (built by finalize)
  std::array<int32_t, 256> byte_ids{};  // id of "<0xXX>", -1 if absent (built by finalize)

  // ---- model ----
  ModelKind model = ModelKind::kBpe;
  MergeOrder order = MergeOrder::kRank;
  // (left id << 32 | right id) -> (rank, merged id), for kRank.
  detail::MergeMap merges;
  bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a whole pre-token found in the vocabulary is emitted as is
  // WordPiece: greedy longest match; the first piece of a word is looked up as word_prefix +
  // text, the others as continuation_prefix + text (HF: "" and "##"; llama.cpp's GGUF "bert"
  // vocabularies: "▁" and ""). A word longer than max_word_chars becomes unk.
  std::string word_prefix, continuation_prefix = "##";
  size_t max_word_chars = 100;
  size_t max_piece_bytes = 0;  // longest vocabulary entry (finalize)
  detail::PieceTrie trie;      // WordPiece and Unigram: the entries of `index` (finalize)
  // Unigram: log-probability of each piece; Viterbi picks the best-scoring segmentation.
  std::vector<double> unigram_scores;
  double unigram_min_score = 0;  // (finalize)

  // ---- normalisation and pre-tokenisation ----
  std::vector<NormStep> norm_steps;
  PrecompiledCharsmap charsmap;            // for NormStep::kPrecompiled
  std::vector<ReplaceRule> replace_rules;  // for the NormStep::kReplace steps, in order
  bool byte_level = false;                 // GPT-2 bytes-to-unicode mapping before the model
  bool byte_level_prefix_space = false;    // ByteLevel add_prefix_space
  PreTokenizer pre = PreTokenizer::kNone;
  std::vector<PreSplit> splits;  // byte-level: after `pre`; others: the whole pre-tokenizer
  bool metaspace = false;        // ' ' -> "▁"
  PrependScheme prepend = PrependScheme::kNever;
  bool prepend_if_missing = false;  // Metaspace: no "▁" added when the text starts with one
  bool metaspace_split = false;     // Metaspace pre-tokenizer split: words start at each "▁"

  std::vector<AddedToken> added;                             // matched in the text before the model
  std::array<std::vector<int32_t>, 256> added_by_byte;       // first byte -> added, longest first
  std::array<std::vector<int32_t>, 256> normalized_by_byte;  // the same for `normalized` ones
  bool has_normalized_added = false;
  std::vector<int32_t> prefix_ids, suffix_ids;  // what add_special puts around the ids
  int32_t bos = -1, eos = -1;

  // ---- decoding ----
  bool strip_leading_space = false;        // HF Strip(" ", 1, 0) / Metaspace prepend removal
  bool wordpiece_decoder = false;          // "##" pieces join the previous one, others get a space
  bool wordpiece_cleanup = true;           // and " ." -> "." and the like, as HF's cleanup does
  std::vector<std::string> decoded;        // [n_vocab] bytes each token contributes (finalize)
  std::vector<std::string> decoded_first;  // [n_vocab] when it is the first token, if different
  std::vector<uint8_t> special;            // [n_vocab] 1 when skip_special drops the token

  // Builds index, byte_ids, decoded and special, and checks consistency. Loaders call it last.
  void finalize();

  void encode_segment(std::string_view text, bool at_start, bool parse_special,
                      std::vector<int32_t>& out) const;
  // After normalisation: pre-tokenisation and the model. `cps` is `text` decoded, if at hand.
  void encode_normalized(std::string_view text, const std::vector<char32_t>* cps, bool at_start,
                         std::vector<int32_t>& out) const;
  // The model on one pre-token (already normalised / byte-mapped).
  void model_word(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void wordpiece_word(std::string_view word, std::vector<int32_t>& out) const;
  void unigram_word(std::string_view word, std::vector<int32_t>& out) const;
  void normalize(std::vector<char32_t>& cps) const;
  // SentencePiece-style handling of one piece: " " -> "▁", the prepended "▁", Metaspace split.
  void metaspace_piece(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
  bool assigned(int32_t id) const;  // a vocabulary entry, not a hole of the id space
  void check_id(int32_t id) const;
};

namespace detail {

// Pre-tokenizer regexes as hand-written matchers over code points. Returns the end index of
// each piece (pieces are contiguous and cover all of cps).
std::vector<size_t> pretokenize(PreTokenizer pre, const std::vector<char32_t>& cps);

// Applies the split steps one after the other (each to every piece the previous left), as
// HF's Sequence of pre-tokenizers does; returns the [begin, end) code point ranges kept.
using Span = std::pair<size_t, size_t>;
using PieceFn = std::function<void(size_t begin, size_t end)>;
// The same for one piece, streaming: on_piece(begin, end) gets each kept range as soon as the
// last step cuts it, so memory stays O(steps) whatever the number of pieces.
void for_each_split(const std::vector<PreSplit>& steps, const std::vector<char32_t>& cps,
                    Span piece, const PieceFn& on_piece);
std::vector<Span> apply_splits(const std::vector<PreSplit>& steps, const std::vector<char32_t>& cps,
                               std::vector<Span> pieces);

// The split steps of a tokenizer.json "pre_tokenizer" object (given as JSON text).
std::vector<PreSplit> splits_from_json(const std::string& pre_tokenizer_json,
                                       const std::string& origin);

// The split steps of llama.cpp's tokenizer.ggml.pre names (empty for an unknown name).
std::vector<PreSplit> splits_for_gguf_pre(const std::string& name, const std::string& origin);

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
