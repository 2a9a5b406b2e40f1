// The encode/decode pipeline shared by every tokenizer kind, streaming, and loading dispatch.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <unordered_set>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "af/io/model_files.hpp"
#include "tokenizer/cancel.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok {

using detail::kComponent;

namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

bool is_byte_piece(std::string_view p, int& value) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return false;
  auto r = std::from_chars(p.data() + 3, p.data() + 5, value, 16);
  return r.ec == std::errc() && r.ptr == p.data() + 5;
}

// Length of the white space starting at byte i (Unicode White_Space, as HF's strip flags use).
size_t whitespace_after(std::string_view s, size_t i) {
  size_t j = i;
  while (j < s.size()) {
    const size_t len = std::min(detail::utf8_len(static_cast<unsigned char>(s[j])), s.size() - j);
    auto cps = detail::decode_utf8(s.substr(j, len));
    if (cps.size() != 1 || !detail::is_whitespace(cps[0])) break;
    j += len;
  }
  return j - i;
}

size_t whitespace_before(std::string_view s, size_t end) {
  size_t j = end;
  while (j > 0) {
    size_t k = j - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    auto cps = detail::decode_utf8(s.substr(k, j - k));
    if (cps.size() != 1 || !detail::is_whitespace(cps[0])) break;
    j = k;
  }
  return end - j;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// HF's WordPiece decoder cleanup, applied to each token's text in this order.
void wordpiece_cleanup_text(std::string& s) {
  replace_all(s, " .", ".");
  replace_all(s, " ?", "?");
  replace_all(s, " !", "!");
  replace_all(s, " ,", ",");
  replace_all(s, " ' ", "'");
  replace_all(s, " n't", "n't");
  replace_all(s, " 'm", "'m");
  replace_all(s, " do not", " don't");
  replace_all(s, " 's", "'s");
  replace_all(s, " 've", "'ve");
  replace_all(s, " 're", "'re");
}

bool is_word_char(char32_t c) { return c == '_' || detail::is_letter(c) || detail::is_number(c); }

// single_word: the characters on both sides of [begin, end) must not be word characters.
bool stands_alone(std::string_view text, size_t begin, size_t end) {
  if (begin > 0) {
    size_t k = begin - 1;
    while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
    const auto cps = detail::decode_utf8(text.substr(k, begin - k));
    if (cps.size() == 1 && is_word_char(cps[0])) return false;
  }
  if (end < text.size()) {
    const size_t len =
        std::min(detail::utf8_len(static_cast<unsigned char>(text[end])), text.size() - end);
    const auto cps = detail::decode_utf8(text.substr(end, len));
    if (cps.size() == 1 && is_word_char(cps[0])) return false;
  }
  return true;
}

// Whether [begin, end) shares a byte with one of `ranges`.
// Whether [begin, end) shares a byte with one of `ranges`. An empty range shares none, even
// strictly inside (empty message content holds no text that could forge a token).
bool overlaps(std::span<const Tokenizer::TextRange> ranges, size_t begin, size_t end) {
  for (const Tokenizer::TextRange& r : ranges) {
    if (r.begin < r.end && r.begin < end && begin < r.end) return true;
  }
  return false;
}

// Cuts `text` at the added tokens of `table` (leftmost, then longest; lstrip / rstrip /
// single_word as HF applies them): the text between goes to on_segment(piece, is_first), the
// tokens' ids to `out`. Special tokens are matched only with parse_special and never where
// they overlap one of `plain` (byte ranges of `text`).
template <class OnSegment>
void scan_added(const Tokenizer::Impl& m, std::string_view text,
                const std::array<std::vector<int32_t>, 256>& table, bool parse_special,
                std::vector<int32_t>& out, OnSegment on_segment,
                std::span<const Tokenizer::TextRange> plain = {}) {
  size_t seg_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (int32_t k : table[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = m.added[k];
      if (t.special && !parse_special) continue;
      if (text.compare(i, t.match.size(), t.match) == 0 &&
          (!t.single_word || stands_alone(text, i, i + t.match.size())) &&
          !(t.special && overlaps(plain, i, i + t.match.size()))) {
        hit = &t;
        break;
      }
    }
    if (hit == nullptr) {
      i += detail::utf8_len(static_cast<unsigned char>(text[i]));
      continue;
    }
    size_t seg_end = i;
    if (hit->lstrip)
      seg_end -= whitespace_before(text.substr(seg_begin, i - seg_begin), i - seg_begin);
    on_segment(text.substr(seg_begin, seg_end - seg_begin), seg_begin == 0);
    out.push_back(hit->id);
    i += hit->match.size();
    if (hit->rstrip) i += whitespace_after(text, i);
    seg_begin = i;
  }
  on_segment(text.substr(seg_begin), seg_begin == 0);
}

}  // namespace

void Tokenizer::Impl::finalize() {
  const size_t n = pieces.size();
  AF_CHECK(n > 0, ErrorCode::kFormat, kComponent, origin, ": empty vocabulary");
  AF_CHECK(n < (size_t(1) << 31), ErrorCode::kFormat, kComponent, origin, ": vocabulary too big");
  if (kinds.empty()) kinds.assign(n, TokenKind::kNormal);
  AF_CHECK(kinds.size() == n, ErrorCode::kFormat, kComponent, origin, ": token_type has ",
           kinds.size(), " entries for ", n, " tokens");
  AF_CHECK(order != MergeOrder::kScore || scores.size() == n, ErrorCode::kFormat, kComponent,
           origin, ": scores has ", scores.size(), " entries for ", n, " tokens");

  index.clear();
  index.reserve(n);
  byte_ids.fill(-1);
  for (size_t id = 0; id < n; ++id) {
    if (kinds[id] == TokenKind::kInvalid) continue;
    index[pieces[id]] = static_cast<int32_t>(id);  // a repeated piece: the last id wins
    int value = 0;
    if (!byte_level && is_byte_piece(pieces[id], value) && byte_ids[value] < 0)
      byte_ids[value] = static_cast<int32_t>(id);
  }

  special.assign(n, 0);
  for (size_t id = 0; id < n; ++id)
    special[id] = kinds[id] == TokenKind::kControl || kinds[id] == TokenKind::kUnknown;
  for (auto& list : added_by_byte) list.clear();
  for (auto& list : normalized_by_byte) list.clear();
  has_normalized_added = false;
  std::vector<uint8_t> is_added(n, 0);
  for (size_t k = 0; k < added.size(); ++k) {
    AddedToken& t = added[k];
    AF_CHECK(t.id >= 0 && size_t(t.id) < n, ErrorCode::kFormat, kComponent, origin,
             ": added token \"", t.content, "\" has id ", t.id, " outside the vocabulary");
    if (t.special) special[t.id] = 1;
    is_added[t.id] = 1;
    // HF looks for `normalized` tokens in the normalised text, spelled as normalised.
    const bool in_normalized = t.normalized && !norm_steps.empty();
    t.match = t.content;
    if (in_normalized) {
      std::vector<char32_t> cps = detail::decode_utf8(t.content);
      normalize(cps);
      t.match = detail::encode_utf8(cps, 0, cps.size());
      has_normalized_added = true;
    }
    if (!t.match.empty())
      (in_normalized ? normalized_by_byte : added_by_byte)[static_cast<unsigned char>(t.match[0])]
          .push_back(static_cast<int32_t>(k));
  }
  for (auto* table : {&added_by_byte, &normalized_by_byte}) {
    for (auto& list : *table) {
      std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
        return added[a].match.size() > added[b].match.size();
      });
    }
  }
  // HF skips special tokens by their text: a vocabulary entry spelled like a special added
  // token (a duplicate piece) is skipped too.
  std::unordered_set<std::string_view> special_texts;
  for (const AddedToken& t : added)
    if (t.special) special_texts.insert(t.content);
  if (!special_texts.empty()) {
    for (size_t id = 0; id < n; ++id)
      if (kinds[id] != TokenKind::kInvalid && special_texts.count(pieces[id])) special[id] = 1;
  }

  max_piece_bytes = 0;
  for (const std::string& p : pieces) max_piece_bytes = std::max(max_piece_bytes, p.size());
  trie.clear();
  if (model == ModelKind::kWordPiece || model == ModelKind::kUnigram) {
    for (size_t id = 0; id < n; ++id)
      if (kinds[id] != TokenKind::kInvalid) trie.insert(pieces[id], static_cast<int32_t>(id));
    trie.link();
  }
  if (model == ModelKind::kUnigram) {
    AF_CHECK(unigram_scores.size() <= n, ErrorCode::kFormat, kComponent, origin,
             ": more Unigram scores than tokens");
    unigram_min_score = 0;
    for (size_t id = 0; id < unigram_scores.size(); ++id)
      if (id == 0 || unigram_scores[id] < unigram_min_score) unigram_min_score = unigram_scores[id];
  }

  decoded.assign(n, {});
  decoded_first.clear();
  if (wordpiece_decoder) {
    // HF's WordPiece decoder: a continuation piece loses its prefix and joins the previous
    // token, any other token after the first gets a space; then the tokenization cleanup.
    decoded_first.assign(n, {});
    for (size_t id = 0; id < n; ++id) {
      const std::string& p = pieces[id];
      const TokenKind kind = kinds[id];
      if (kind == TokenKind::kInvalid) continue;
      auto starts_with = [&](const std::string& prefix) {
        return !prefix.empty() && p.compare(0, prefix.size(), prefix) == 0;
      };
      bool continuation = false;
      std::string body = p;
      if (!word_prefix.empty()) {
        // GGUF "bert": word starts are marked ("▁piece"), continuations are bare.
        const bool verbatim = is_added[id] || kind == TokenKind::kControl ||
                              kind == TokenKind::kUserDefined || kind == TokenKind::kUnknown;
        if (!verbatim && starts_with(word_prefix)) {
          body = p.substr(word_prefix.size());
        } else if (!verbatim) {
          continuation = true;
        }
      } else if (starts_with(continuation_prefix)) {
        continuation = true;
        body = p.substr(continuation_prefix.size());
      }
      decoded[id] = continuation ? body : " " + body;
      decoded_first[id] = (continuation && word_prefix.empty()) ? p : body;
      if (wordpiece_cleanup) {
        wordpiece_cleanup_text(decoded[id]);
        wordpiece_cleanup_text(decoded_first[id]);
      }
    }
    return;
  }
  for (size_t id = 0; id < n; ++id) {
    const std::string& p = pieces[id];
    const TokenKind kind = kinds[id];
    if (kind == TokenKind::kInvalid) continue;
    const bool verbatim = is_added[id] || kind == TokenKind::kControl ||
                          kind == TokenKind::kUserDefined || kind == TokenKind::kUnknown;
    if (byte_level) {
      // Each character stands for one byte; a piece with other characters (added tokens)
      // decodes to its own text, as HF's ByteLevel decoder does.
      std::string bytes;
      bool ok = !verbatim;
      if (ok) {
        for (char32_t c : detail::decode_utf8(p)) {
          const int b = detail::byte_from_unicode(c);
          if (b < 0) {
            ok = false;
            break;
          }
          bytes.push_back(static_cast<char>(b));
        }
      }
      decoded[id] = ok ? bytes : p;
      continue;
    }
    int value = 0;
    if (!verbatim && is_byte_piece(p, value)) {
      decoded[id] = std::string(1, static_cast<char>(value));
      continue;
    }
    std::string text;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, kMetaspace.size(), kMetaspace) == 0) {
        text.push_back(' ');
        i += kMetaspace.size();
      } else {
        text.push_back(p[i++]);
      }
    }
    decoded[id] = text;
  }
}

bool Tokenizer::Impl::assigned(int32_t id) const {
  return id >= 0 && size_t(id) < pieces.size() && kinds[id] != TokenKind::kInvalid;
}

void Tokenizer::Impl::check_id(int32_t id) const {
  AF_CHECK(assigned(id), ErrorCode::kInvalidArgument, kComponent, "unknown token id ", id,
           " (vocabulary of ", origin, " has ", pieces.size(), " ids)");
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_start, bool parse_special,
                                     std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (norm_steps.empty()) return encode_normalized(text, nullptr, at_start, out);
  std::vector<char32_t> cps = detail::decode_utf8(text);
  normalize(cps);
  const std::string normalized = detail::encode_utf8(cps, 0, cps.size());
  if (!has_normalized_added) return encode_normalized(normalized, &cps, at_start, out);
  scan_added(*this, normalized, normalized_by_byte, parse_special, out,
             [&](std::string_view piece, bool first) {
               encode_normalized(piece, nullptr, at_start && first, out);
             });
}

void Tokenizer::Impl::encode_normalized(std::string_view text, const std::vector<char32_t>* cps_in,
                                        bool at_start, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (!byte_level && splits.empty()) return metaspace_piece(text, at_start, out);
  // Pieces go to the model as they are cut (no list of all pieces), so the memory beyond the
  // code points and the ids is one piece's.
  std::vector<char32_t> decoded_cps;
  if (cps_in == nullptr) decoded_cps = detail::decode_utf8(text);
  const std::vector<char32_t>* cps = cps_in ? cps_in : &decoded_cps;
  if (byte_level) {
    if (byte_level_prefix_space && (*cps)[0] != ' ') {
      if (cps_in != nullptr) decoded_cps = *cps_in;
      decoded_cps.insert(decoded_cps.begin(), U' ');
      cps = &decoded_cps;
    }
    const auto& b2u = detail::byte_to_unicode();
    std::string mapped, bytes;
    detail::for_each_split(splits, *cps, {0, cps->size()}, [&](size_t begin, size_t end) {
      mapped.clear();
      for (size_t i = begin; i < end; ++i) {
        const char32_t c = (*cps)[i];
        if (c < 0x80) {
          mapped += b2u[c];
        } else {
          bytes.clear();
          detail::append_utf8(bytes, c);
          for (char b : bytes) mapped += b2u[static_cast<uint8_t>(b)];
        }
      }
      bpe_word(mapped, out);
    });
    return;
  }
  {
    bool first = at_start;
    std::string piece;
    detail::for_each_split(splits, *cps, {0, cps->size()}, [&](size_t begin, size_t end) {
      piece.clear();
      for (size_t i = begin; i < end; ++i) detail::append_utf8(piece, (*cps)[i]);
      if (metaspace) {
        metaspace_piece(piece, first, out);
      } else {
        model_word(piece, out);
      }
      first = false;
    });
  }
}

void Tokenizer::Impl::metaspace_piece(std::string_view text, bool at_start,
                                      std::vector<int32_t>& out) const {
  std::string s;
  s.reserve(text.size() + 16);
  const bool starts_with_space = !text.empty() && text[0] == ' ';
  if (prepend == PrependScheme::kAlways || (prepend == PrependScheme::kFirst && at_start)) {
    if (!(prepend_if_missing && metaspace && starts_with_space)) s += kMetaspace;
  }
  for (char c : text) {
    if (metaspace && c == ' ') {
      s += kMetaspace;
    } else {
      s.push_back(c);
    }
  }
  if (!metaspace_split) {
    model_word(s, out);
    return;
  }
  // Metaspace split: every word starts at a "▁" and merges never cross words.
  size_t begin = 0;
  for (size_t i = 1; i <= s.size(); ++i) {
    if (i == s.size() || s.compare(i, kMetaspace.size(), kMetaspace) == 0) {
      model_word(std::string_view(s).substr(begin, i - begin), out);
      begin = i;
    }
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  return encode_ranges(text, add_special, parse_special, {}, {});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                                       const std::function<bool()>& cancelled) const {
  return encode_ranges(text, add_special, parse_special, {}, cancelled);
}

std::vector<int32_t> Tokenizer::encode_with_plain_ranges(
    std::string_view text, bool add_special, std::span<const TextRange> plain,
    const std::function<bool()>& cancelled) const {
  for (const TextRange& r : plain) {
    AF_CHECK(r.begin <= r.end && r.end <= text.size(), ErrorCode::kInvalidArgument, kComponent,
             "plain range [", r.begin, ", ", r.end, ") lies outside the text of ", text.size(),
             " bytes");
  }
  return encode_ranges(text, add_special, /*parse_special=*/true, plain, cancelled);
}

std::vector<int32_t> Tokenizer::encode_ranges(std::string_view text, bool add_special,
                                              bool parse_special, std::span<const TextRange> plain,
                                              const std::function<bool()>& cancelled) const {
  const detail::CancelScope cancel_scope(&cancelled);
  const Impl& m = *impl_;
  (void)detail::decode_utf8(text);  // validates: errors name the byte offset
  std::vector<int32_t> out;
  if (add_special) out = m.prefix_ids;

  // Added tokens are split out first (leftmost, then longest), the text between them goes
  // through normalisation and the model one segment at a time, as in HF and llama.cpp.
  scan_added(
      m, text, m.added_by_byte, parse_special, out,
      [&](std::string_view segment, bool first) {
        // Normalised special tokens are matched in normalised text, whose offsets differ from
        // the input's: a segment touching a plain range parses none of them.
        const auto begin = static_cast<size_t>(segment.data() - text.data());
        const bool special_here =
            parse_special && (plain.empty() || !overlaps(plain, begin, begin + segment.size()));
        m.encode_segment(segment, first, special_here, out);
      },
      plain);

  if (add_special) out.insert(out.end(), m.suffix_ids.begin(), m.suffix_ids.end());
  return out;
}

std::string Tokenizer::token_bytes(int32_t id, bool first) const {
  impl_->check_id(id);
  if (first && !impl_->decoded_first.empty()) return impl_->decoded_first[id];
  const std::string& b = impl_->decoded[id];
  if (first && impl_->strip_leading_space && !b.empty() && b[0] == ' ') return b.substr(1);
  return b;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    impl_->check_id(id);
    if (skip_special && impl_->special[id]) continue;
    // HF strips one leading space of the whole text: it belongs to the first non-empty token.
    bytes += token_bytes(id, first);
    if (!impl_->decoded[id].empty()) first = false;
  }
  std::string out;
  detail::append_utf8_lossy(out, bytes, false);
  return out;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->pieces.size()); }
bool Tokenizer::is_assigned(int32_t id) const { return impl_->assigned(id); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }

std::string Tokenizer::token_piece(int32_t id) const {
  impl_->check_id(id);
  return impl_->pieces[id];
}

int32_t Tokenizer::token_id(std::string_view piece) const {
  auto it = impl_->index.find(piece);
  return it == impl_->index.end() ? -1 : it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  impl_->check_id(id);
  return impl_->special[id] != 0;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const io::GgufFile& gguf) {
  return std::make_unique<Tokenizer>(detail::load_gguf_vocab(gguf));
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  AF_CHECK(fs::exists(p, ec), ErrorCode::kIo, kComponent, path, ": no such file or folder");
  auto optional = [&](const fs::path& f) { return fs::is_regular_file(f, ec) ? f.string() : ""; };
  if (fs::is_directory(p, ec)) {
    const std::string config = optional(p / "tokenizer_config.json");
    if (fs::is_regular_file(p / "tokenizer.json", ec))
      return std::make_unique<Tokenizer>(
          detail::load_tokenizer_json((p / "tokenizer.json").string(), config));
    if (fs::is_regular_file(p / "vocab.json", ec) && fs::is_regular_file(p / "merges.txt", ec))
      return std::make_unique<Tokenizer>(detail::load_vocab_merges(
          (p / "vocab.json").string(), (p / "merges.txt").string(), config));
    fail(ErrorCode::kFormat, kComponent, path,
         ": folder has neither tokenizer.json nor vocab.json + merges.txt");
  }
  const std::string content = io::sniff_file_format(path);
  if (p.extension() == ".gguf" || content == "gguf") return from_gguf(io::GgufFile::open(path));
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  // A model's weights file: its tokenizer is the one beside it, as for the folder.
  if (p.extension() == ".safetensors" || content == "safetensors") return load(dir.string());
  const std::string config = optional(dir / "tokenizer_config.json");
  if (p.filename() == "vocab.json") {
    AF_CHECK(fs::is_regular_file(dir / "merges.txt", ec), ErrorCode::kIo, kComponent, path,
             ": no merges.txt beside it");
    return std::make_unique<Tokenizer>(
        detail::load_vocab_merges(path, (dir / "merges.txt").string(), config));
  }
  AF_CHECK(p.extension() == ".json" || content == "json", ErrorCode::kFormat, kComponent, path,
           ": unrecognised model format (expected an HF folder, a .safetensors file beside "
           "tokenizer.json, a GGUF file, or a tokenizer.json / vocab.json file)");
  return std::make_unique<Tokenizer>(detail::load_tokenizer_json(path, config));
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tok_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  const std::string raw = tok_.token_bytes(id, false);
  if (raw.empty()) return {};
  pending_ += started_ ? raw : tok_.token_bytes(id, true);
  started_ = true;
  std::string out;
  pending_ = detail::append_utf8_lossy(out, pending_, true);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  detail::append_utf8_lossy(out, pending_, false);
  pending_.clear();
  return out;
}

std::string format_ids(std::span<const int32_t> ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(' ');
    out += std::to_string(ids[i]);
  }
  return out;
}

std::vector<int32_t> parse_ids(std::string_view text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (true) {
    while (i < text.size() && space(text[i])) ++i;
    if (i == text.size()) break;
    size_t j = i;
    while (j < text.size() && !space(text[j])) ++j;
    int32_t v = 0;
    auto r = std::from_chars(text.data() + i, text.data() + j, v);
    AF_CHECK(r.ec == std::errc() && r.ptr == text.data() + j, ErrorCode::kInvalidArgument,
             kComponent, "not a token id: \"", text.substr(i, j - i), "\"");
    ids.push_back(v);
    i = j;
  }
  return ids;
}

}  // namespace af::tok
