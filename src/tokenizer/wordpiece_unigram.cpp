// The two non-BPE models: WordPiece (BERT: greedy longest match from the left) and Unigram
// (SentencePiece / HF Unigram: the segmentation with the highest total log-probability).
#include <algorithm>

#include "af/core/error.hpp"
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
  std::string key;
  for (size_t start = 0; start < word.size();) {
    const std::string& prefix = start == 0 ? word_prefix : continuation_prefix;
    // Longest vocabulary entry first; candidate ends fall on character boundaries.
    size_t end = std::min(word.size(), start + max_piece_bytes);
    int32_t found = -1;
    while (end > start) {
      if (end == word.size() || (static_cast<unsigned char>(word[end]) & 0xC0) != 0x80) {
        key.assign(prefix);
        key.append(word.substr(start, end - start));
        if (auto it = index.find(key); it != index.end()) {
          found = it->second;
          break;
        }
      }
      --end;
    }
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
  for (size_t start = 0; start < n;) {
    const size_t char_len =
        std::min(detail::utf8_len(static_cast<unsigned char>(word[start])), n - start);
    const double base = best[start].score;
    bool single_char = false;
    const size_t longest = std::min(n - start, max_piece_bytes);
    for (size_t len = 1; len <= longest; ++len) {
      auto it = index.find(word.substr(start, len));
      if (it == index.end()) continue;
      const int32_t id = it->second;
      if (static_cast<size_t>(id) >= unigram_scores.size()) continue;  // added tokens
      const double score = base + unigram_scores[id];
      Best& target = best[start + len];
      if (!target.reached || score > target.score) target = {score, start, id, true};
      if (len == char_len) single_char = true;
    }
    if (!single_char) {
      AF_CHECK(unk_id >= 0, ErrorCode::kInvalidArgument, kComponent, origin,
               ": Unigram needs an unk token for \"", word.substr(start, char_len),
               "\" and the vocabulary has none");
      Best& target = best[start + char_len];
      const double score = base + unk_score;
      if (!target.reached || score > target.score) target = {score, start, unk_id, true};
    }
    start += char_len;
  }

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
      case NormStep::kBertStripAccents:
        for (char32_t c : detail::normalize(detail::NormalForm::kNfd, cps))
          if (!detail::is_nonspacing_mark(c)) next.push_back(c);
        break;
    }
    cps.swap(next);
  }
}

}  // namespace af::tok
