// The BPE model proper: symbols (one per character, or per byte for byte fallback) merged
// pairwise by priority until no adjacent pair can merge. The two references differ only in the
// priority: llama.cpp's SPM tokenizer merges by the score of the merged piece (highest first),
// HF's BPE by the pair's rank in the merges list (lowest first). Ties go to the leftmost pair.
#include <algorithm>
#include <cstring>
#include <vector>

#include "tokenizer/cancel.hpp"
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

// 16 bytes, ordered by one integer: the heap operations dominate encoding time, and a word of
// n bytes queues up to n of them. The right symbol is the left one's next: that link changes
// only when the left symbol grows, which the length check catches.
struct Candidate {
  uint64_t order;  // priority (lower merges first) << 32 | left symbol: ties go leftmost
  uint32_t left_len, right_len;  // lengths when queued: a later mismatch means it is stale
  bool operator>(const Candidate& o) const { return order > o.order; }
  int32_t left() const { return static_cast<int32_t>(order & 0xFFFFFFFFu); }
};

// Orders floats as unsigned integers (IEEE 754: flip all bits of negatives, the sign bit of
// the rest).
uint32_t sortable(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

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

  // A min-heap over a vector reserved once: when it fills up, the stale candidates are dropped
  // (the live ones are at most one per adjacent pair, fewer than n), so it never grows past
  // 1.25 n and no doubling copy is made.
  std::vector<Candidate> heap;
  heap.reserve(size_t(n) + size_t(n) / 4 + 16);
  auto stale = [&](const Candidate& c) {
    const Symbol& a = syms[c.left()];
    return a.len != c.left_len || a.next < 0 || syms[a.next].len != c.right_len;
  };
  // The merged id of the live pair (l, r), or -1 when it does not merge.
  auto merged_id = [&](const Symbol& a, const Symbol& b, uint64_t* priority) -> int32_t {
    if (order == MergeOrder::kScore) {
      auto it = index.find(word.substr(a.start, a.len + b.len));
      if (it == index.end()) return -1;
      if (priority) *priority = sortable(-scores[it->second]);
      return it->second;
    }
    if (a.id < 0 || b.id < 0) return -1;
    const detail::MergeMap::Value* m = merges.find(detail::MergeMap::key(a.id, b.id));
    if (m == nullptr) return -1;
    if (priority) *priority = uint32_t(m->first);
    return m->second;
  };
  auto consider = [&](int32_t l, int32_t r, bool heapify) {
    if (l < 0 || r < 0) return;
    const Symbol& a = syms[l];
    const Symbol& b = syms[r];
    uint64_t priority = 0;
    if (merged_id(a, b, &priority) < 0) return;
    if (heap.size() == heap.capacity() && heapify) {
      std::erase_if(heap, stale);
      std::make_heap(heap.begin(), heap.end(), std::greater<>());
    }
    heap.push_back({(priority << 32) | uint32_t(l), a.len, b.len});
    if (heapify) std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1, false);
  std::make_heap(heap.begin(), heap.end(), std::greater<>());

  size_t pops = 0;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    if ((++pops & 4095) == 0) detail::poll_cancel(4096);  // a huge word stays cancellable
    if (stale(c)) continue;
    const int32_t left = c.left();
    Symbol& a = syms[left];
    const int32_t right = a.next;
    Symbol& b = syms[right];
    a.id = merged_id(a, b, nullptr);
    a.len += b.len;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = left;
    b.len = 0;
    consider(a.prev, left, true);
    consider(left, a.next, true);
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
