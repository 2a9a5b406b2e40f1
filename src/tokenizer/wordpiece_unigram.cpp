// The two non-BPE models: WordPiece (BERT: greedy longest match from the left) and Unigram
// (SentencePiece / HF Unigram: the segmentation with the highest total log-probability).
#include <algorithm>

#include "af/core/error.hpp"
#include "tokenizer/cancel.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok {

using detail::kComponent;

void Tokenizer::Impl::model_word(std::string_view word, std::vector<int32_t>& out) const {
  switch (model) {
    case ModelKind::kBpe:
      bpe_word(word, out);
      return;
    case ModelKind::kWordPiece:
      wordpiece_word(word, out);
      return;
    case ModelKind::kUnigram:
      unigram_word(word, out);
      return;
  }
}

void Tokenizer::Impl::wordpiece_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  auto unknown = [&] {
    AF_CHECK(unk_id >= 0, ErrorCode::kInvalidArgument, kComponent, origin,
             ": WordPiece needs an unk token for \"", word, "\" and the vocabulary has none");
    out.push_back(unk_id);
  };
  size_t chars = 0;
  for (size_t i = 0; i < word.size(); i += detail::utf8_len(static_cast<unsigned char>(word[i])))
    ++chars;
  if (chars > max_word_chars) return unknown();

  const size_t first_out = out.size();
  const int32_t word_root = trie.walk(detail::PieceTrie::kRoot, word_prefix);
  const int32_t continuation_root = trie.walk(detail::PieceTrie::kRoot, continuation_prefix);
  for (size_t start = 0; start < word.size();) {
    // The longest vocabulary entry (prefix + text) that ends on a character boundary: one walk
    // down the trie, O(its depth), instead of a lookup per candidate length.
    size_t end = start;
    int32_t found = -1;
    int32_t node = start == 0 ? word_root : continuation_root;
    for (size_t i = start; node >= 0 && i < word.size(); ++i) {
      node = trie.child(node, static_cast<unsigned char>(word[i]));
      const bool boundary =
          i + 1 == word.size() || (static_cast<unsigned char>(word[i + 1]) & 0xC0) != 0x80;
      if (node >= 0 && boundary && trie.id(node) >= 0) {
        found = trie.id(node);
        end = i + 1;
      }
    }
    detail::poll_cancel(end - start + 1);
    if (found < 0) {
      out.resize(first_out);  // one piece missing: the whole word is unknown
      return unknown();
    }
    out.push_back(found);
    start = end;
  }
}

void Tokenizer::Impl::unigram_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  struct Best {
    double score = 0;
    size_t from = 0;
    int32_t id = -1;
    bool reached = false;
  };
  const size_t n = word.size();
  std::vector<Best> best(n + 1);
  best[0].reached = true;
  const double unk_score = unigram_min_score - 10.0;  // HF's and SentencePiece's penalty
  // Character starts: pieces are only taken between them.
  std::vector<bool> boundary(n + 1, false);
  for (size_t i = 0; i < n;
       i += std::min(detail::utf8_len(static_cast<unsigned char>(word[i])), n - i))
    boundary[i] = true;
  boundary[n] = true;
  // Viterbi by end position over all vocabulary entries found in one Aho-Corasick pass:
  // O(n + entries found), where trying every length at every start cost O(n * longest entry).
  // Each end takes its candidates from the leftmost start on (strictly better replaces), then
  // the unknown piece for its last character, the order the start-by-start relaxation had.
  size_t char_start = 0;     // start of the character ending at the next boundary
  bool single_char = false;  // a vocabulary entry covers exactly that character
  size_t polled = 0;
  auto relax = [&](size_t from, size_t to, int32_t id, double piece_score) {
    const double score = best[from].score + piece_score;
    Best& target = best[to];
    if (!target.reached || score > target.score) target = {score, from, id, true};
  };
  trie.for_each_occurrence(
      word,
      [&](size_t end, size_t len, int32_t id) {
        const size_t start = end - len;
        if (!boundary[start] || !boundary[end]) return;
        if (static_cast<size_t>(id) >= unigram_scores.size()) return;  // added tokens
        relax(start, end, id, unigram_scores[id]);
        if (start == char_start) single_char = true;
      },
      [&](size_t end) {
        if (!boundary[end]) return;
        if (!single_char) {
          AF_CHECK(unk_id >= 0, ErrorCode::kInvalidArgument, kComponent, origin,
                   ": Unigram needs an unk token for \"", word.substr(char_start, end - char_start),
                   "\" and the vocabulary has none");
          relax(char_start, end, unk_id, unk_score);
        }
        char_start = end;
        single_char = false;
        if (end - polled >= 4096) {
          detail::poll_cancel(end - polled);
          polled = end;
        }
      });

  // Back from the end; consecutive unknown pieces fuse into one, which then becomes byte
  // tokens (byte_fallback) or a single unk.
  std::vector<std::pair<size_t, size_t>> pieces;  // [begin, end) of each piece, reversed
  std::vector<int32_t> ids;
  for (size_t end = n; end > 0;) {
    const Best& b = best[end];
    if (b.id == unk_id && !ids.empty() && ids.back() == unk_id) {
      pieces.back().first = b.from;
    } else {
      pieces.emplace_back(b.from, end);
      ids.push_back(b.id);
    }
    end = b.from;
  }
  for (size_t k = ids.size(); k-- > 0;) {
    if (ids[k] != unk_id) {
      out.push_back(ids[k]);
      continue;
    }
    const std::string_view text = word.substr(pieces[k].first, pieces[k].second - pieces[k].first);
    if (auto it = index.find(text); it != index.end()) {
      out.push_back(it->second);
      continue;
    }
    bool all_bytes = byte_fallback;
    for (size_t i = 0; all_bytes && i < text.size(); ++i)
      all_bytes = byte_ids[static_cast<unsigned char>(text[i])] >= 0;
    if (all_bytes) {
      for (char c : text) out.push_back(byte_ids[static_cast<unsigned char>(c)]);
    } else {
      out.push_back(unk_id);
    }
  }
}

void Tokenizer::Impl::normalize(std::vector<char32_t>& cps) const {
  std::vector<char32_t> next;
  size_t replace_index = 0;
  for (NormStep step : norm_steps) {
    next.clear();
    switch (step) {
      case NormStep::kNfc:
        cps = detail::nfc(cps);
        continue;
      case NormStep::kNfd:
        cps = detail::normalize(detail::NormalForm::kNfd, cps);
        continue;
      case NormStep::kNfkc:
        cps = detail::normalize(detail::NormalForm::kNfkc, cps);
        continue;
      case NormStep::kNfkd:
        cps = detail::normalize(detail::NormalForm::kNfkd, cps);
        continue;
      case NormStep::kLowercase:
        for (char32_t c : cps) detail::append_lower(next, c);
        break;
      case NormStep::kStripAccents:
        for (char32_t c : cps)
          if (detail::char_class(c) != detail::CharClass::kMark) next.push_back(c);
        break;
      case NormStep::kBertCleanText:
        for (char32_t c : cps) {
          // Every assigned C* character but \t \n \r counts as control (HF's is_other),
          // \v and U+0085 included although they are white space.
          const bool control = c != '\t' && c != '\n' && c != '\r' && detail::is_control(c);
          if (c == 0 || c == 0xFFFD || control) continue;
          next.push_back(detail::is_whitespace(c) ? U' ' : c);
        }
        break;
      case NormStep::kBertChinese:
        for (char32_t c : cps) {
          const bool cjk = (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
                           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
                           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
                           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
          if (cjk) next.push_back(U' ');
          next.push_back(c);
          if (cjk) next.push_back(U' ');
        }
        break;
      case NormStep::kPrecompiled: {
        // HF's Precompiled: a whole grapheme cluster (under 6 bytes) is looked up first, then
        // each of its characters.
        std::string chunk;
        size_t len = 0;
        auto append = [&](const char* rep) {
          for (char32_t c : detail::decode_utf8(std::string_view(rep, len))) next.push_back(c);
        };
        for (size_t i = 0; i < cps.size();) {
          const size_t end = detail::grapheme_end(cps, i);
          chunk = detail::encode_utf8(cps, i, end);
          if (chunk.size() < 6) {
            if (const char* rep = charsmap.lookup(chunk, len)) {
              append(rep);
              i = end;
              continue;
            }
          }
          for (; i < end; ++i) {
            chunk.clear();
            detail::append_utf8(chunk, cps[i]);
            if (const char* rep = charsmap.lookup(chunk, len)) {
              append(rep);
            } else {
              next.push_back(cps[i]);
            }
          }
        }
        break;
      }
      case NormStep::kReplace: {
        const ReplaceRule& rule = replace_rules.at(replace_index++);
        size_t prev = 0;
        rule.pattern->for_each_match(cps.data(), cps.size(), [&](size_t b, size_t e) {
          next.insert(next.end(), cps.begin() + prev, cps.begin() + b);
          next.insert(next.end(), rule.content.begin(), rule.content.end());
          prev = e;
        });
        next.insert(next.end(), cps.begin() + prev, cps.end());
        break;
      }
      case NormStep::kBertStripAccents:
        for (char32_t c : detail::normalize(detail::NormalForm::kNfd, cps))
          if (!detail::is_nonspacing_mark(c)) next.push_back(c);
        break;
    }
    cps.swap(next);
  }
}

PrecompiledCharsmap PrecompiledCharsmap::parse(std::string_view blob, const std::string& origin) {
  AF_CHECK(blob.size() >= 4, ErrorCode::kFormat, kComponent, origin,
           ": precompiled_charsmap is shorter than its header");
  uint32_t trie_bytes = 0;
  for (int k = 3; k >= 0; --k) trie_bytes = (trie_bytes << 8) | static_cast<uint8_t>(blob[k]);
  AF_CHECK(trie_bytes % 4 == 0 && trie_bytes <= blob.size() - 4, ErrorCode::kFormat, kComponent,
           origin, ": precompiled_charsmap array size ", trie_bytes, " does not fit its ",
           blob.size(), " bytes");
  PrecompiledCharsmap m;
  m.units.resize(trie_bytes / 4);
  for (size_t i = 0; i < m.units.size(); ++i) {
    uint32_t u = 0;
    for (int k = 3; k >= 0; --k) u = (u << 8) | static_cast<uint8_t>(blob[4 + 4 * i + k]);
    m.units[i] = u;
  }
  m.replacements = std::string(blob.substr(4 + trie_bytes));
  return m;
}

const char* PrecompiledCharsmap::lookup(std::string_view text, size_t& replacement_len) const {
  // darts-clone unit: bits 0-7 label (bit 31 set on value units), bit 8 "has leaf", bits 10-30
  // offset (shifted by 8 more when bit 9 is set), value units: bits 0-30.
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  if (units.empty()) return nullptr;
  size_t pos = offset(units[0]);
  for (unsigned char c : text) {
    if (c == 0) return nullptr;
    pos ^= c;
    if (pos >= units.size()) return nullptr;
    const uint32_t u = units[pos];
    if ((u & ((1u << 31) | 0xFFu)) != c) return nullptr;
    pos ^= offset(u);
    if ((u >> 8) & 1) {
      if (pos >= units.size()) return nullptr;
      const size_t value = units[pos] & 0x7FFFFFFFu;
      AF_CHECK(value < replacements.size(), ErrorCode::kFormat, kComponent,
               "precompiled_charsmap replacement offset ", value, " is outside its ",
               replacements.size(), " bytes");
      const size_t nul = replacements.find('\0', value);
      replacement_len = (nul == std::string::npos ? replacements.size() : nul) - value;
      return replacements.data() + value;
    }
  }
  return nullptr;
}

}  // namespace af::tok
