// The BPE model proper: symbols (one per character, or per byte for byte fallback) merged
// pairwise by priority until no adjacent pair can merge. The two references differ only in the
// priority: llama.cpp's SPM tokenizer merges by the score of the merged piece (highest first),
// HF's BPE by the pair's rank in the merges list (lowest first). Ties go to the leftmost pair.
#include <queue>

#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/unicode.hpp"

namespace af::tok {
namespace {

struct Symbol {
  uint32_t start = 0;  // byte offset in the word
  uint32_t len = 0;    // 0 once merged into its left neighbour
  int32_t id = -1;     // vocabulary id, -1 when the text is not in the vocabulary
  int32_t prev = -1, next = -1;
};

struct Candidate {
  double priority;  // lower merges first
  int32_t left, right;
  uint32_t left_len, right_len;  // lengths when queued: a later mismatch means it is stale
  int32_t merged;
  bool operator>(const Candidate& o) const {
    return priority != o.priority ? priority > o.priority : left > o.left;
  }
};

}  // namespace

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = index.find(word); it != index.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto push = [&](uint32_t start, uint32_t len, int32_t id) {
    Symbol s;
    s.start = start, s.len = len, s.id = id;
    syms.push_back(s);
  };
  for (size_t i = 0; i < word.size();) {
    const size_t len =
        std::min(detail::utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
    auto it = index.find(word.substr(i, len));
    const int32_t id = it == index.end() ? -1 : it->second;
    if (id < 0 && order == MergeOrder::kRank) {
      // HF: an unknown character becomes its byte tokens when all exist, else <unk>
      // (consecutive <unk>s fused into one when fuse_unk).
      bool all_bytes = byte_fallback;
      for (size_t k = 0; all_bytes && k < len; ++k)
        all_bytes = byte_ids[static_cast<unsigned char>(word[i + k])] >= 0;
      if (all_bytes) {
        for (size_t k = 0; k < len; ++k)
          push(i + k, 1, byte_ids[static_cast<unsigned char>(word[i + k])]);
      } else if (fuse_unk && !syms.empty() && syms.back().id == unk_id && unk_id >= 0) {
        syms.back().len += len;
      } else {
        push(i, len, unk_id);
      }
    } else {
      push(i, len, id);
    }
    i += len;
  }
  const int32_t n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i < n; ++i) {
    syms[i].prev = i - 1;
    syms[i].next = i + 1 < n ? i + 1 : -1;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = syms[l];
    const Symbol& b = syms[r];
    if (order == MergeOrder::kScore) {
      auto it = index.find(word.substr(a.start, a.len + b.len));
      if (it == index.end()) return;
      queue.push({-static_cast<double>(scores[it->second]), l, r, a.len, b.len, it->second});
    } else {
      if (a.id < 0 || b.id < 0) return;
      auto it = merges.find((uint64_t(uint32_t(a.id)) << 32) | uint32_t(b.id));
      if (it == merges.end()) return;
      queue.push({static_cast<double>(it->second.first), l, r, a.len, b.len, it->second.second});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& a = syms[c.left];
    if (a.len != c.left_len || a.next != c.right || syms[c.right].len != c.right_len) continue;
    Symbol& b = syms[c.right];
    a.len += b.len;
    a.id = c.merged;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = c.left;
    b.len = 0;
    consider(a.prev, c.left);
    consider(c.left, a.next);
  }

  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) {
    const Symbol& s = syms[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (order == MergeOrder::kRank) {
      continue;  // no <unk> in this vocabulary: HF drops the character
    }
    // llama.cpp SPM: a piece outside the vocabulary is spelled with byte tokens.
    for (uint32_t k = 0; k < s.len; ++k) {
      const int32_t b = byte_ids[static_cast<unsigned char>(word[s.start + k])];
      if (b >= 0) {
        out.push_back(b);
      } else if (unk_id >= 0) {
        out.push_back(unk_id);
      }
    }
  }
}

}  // namespace af::tok
