#pragma once
// Byte-level matcher of a JsonGrammar, and the token mask built from it.
//
// The matcher is a pushdown recogniser: a stack of frames (document, object, array, string,
// number, literal) per way the bytes so far can be read. anyOf makes it nondeterministic, so
// the state is a small set of such stacks; a byte that no stack accepts is refused and leaves
// the state unchanged. Every live stack can still be completed to a document that validates,
// so constrained generation never paints itself into a corner (nesting within max_nesting).
//
// fill_mask() finds every token whose bytes the matcher accepts with one depth-first walk over
// a trie of the vocabulary (VocabIndex, built once per tokenizer), advancing a copy of the state
// by one byte per trie edge: tokens sharing a prefix share its work, and a refused byte prunes
// the whole subtree. Inside a plain string (the common case, and the one where most of the
// vocabulary is allowed) tokens without '"', '\\' or control bytes and made of whole UTF-8
// characters are allowed by a precomputed list, and only the others are walked.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/json_grammar.hpp"

namespace af::runtime {

// The vocabulary as tries of token bytes. Token i is bytes[i]; empty strings (special tokens,
// holes) are never allowed.
class VocabIndex {
 public:
  explicit VocabIndex(const std::vector<std::string>& bytes);

  // Nodes in depth-first order; node k's subtree is [k, skip[k]).
  struct Trie {
    std::vector<uint8_t> byte;         // [nodes] the edge into the node
    std::vector<uint16_t> depth;       // [nodes] 1 for children of the root
    std::vector<uint32_t> skip;        // [nodes]
    std::vector<uint32_t> ends_begin;  // [nodes + 1] tokens ending here: ids[ends_begin[k]..]
    std::vector<int32_t> ids;
    size_t max_depth = 0;
    void build(std::vector<std::pair<std::string_view, int32_t>> tokens);
  };
  Trie all;                          // every token with bytes
  Trie string_unsafe;                // tokens not in string_safe
  std::vector<int32_t> string_safe;  // tokens any plain string body may take whole
  std::vector<uint32_t> safe_chars;  // [string_safe] characters in each
  size_t vocab = 0;
};

class JsonMatcher {
 public:
  explicit JsonMatcher(std::shared_ptr<const JsonGrammar> grammar);

  // Feeds bytes; false (and no change) if they cannot continue a valid document.
  bool push(uint8_t byte);
  bool push(std::string_view bytes);
  // The bytes so far are a whole valid document (generation may end here).
  bool accepts_end() const;
  // accepts_end() and no byte can follow.
  bool closed() const;
  // allowed[i] = 1 for each token i of `index` the matcher accepts whole, 0 otherwise.
  void fill_mask(const VocabIndex& index, std::vector<uint8_t>& allowed) const;

  struct Frame {
    uint32_t node = 0;  // grammar node; kDocument for the bottom frame
    uint8_t state = 0;  // per kind
    uint8_t esc = 0;    // string scanner: 0 none, 1 after '\\', 2..5 hex digits left + 1
    uint8_t utf8_left = 0, utf8_lo = 0x80, utf8_hi = 0xBF;  // continuation bytes expected
    uint8_t negative = 0;  // integer: minus sign; string: the \\u escape starts with 'd'
    int32_t prop = -1;     // object: property being read or valued (-1: an additional key)
    uint32_t pos = 0;      // key/literal trie node, format position, digit count
    uint32_t count = 0;    // string characters, array items, fraction digits
    uint64_t bits = 0;     // object: properties seen; integer: magnitude; format: digits
    bool operator==(const Frame&) const = default;
  };
  struct Stack {
    std::vector<Frame> frames;
    uint32_t spaces = 0;  // consecutive whitespace bytes
    bool alive = true;
    bool operator==(const Stack& o) const { return frames == o.frames && spaces == o.spaces; }
  };
  struct State {
    std::vector<Stack> stacks;  // [0, n) are live; the rest keep their capacity for reuse
    size_t n = 0;
  };
  static constexpr uint32_t kDocument = UINT32_MAX;

 private:
  bool advance(const State& in, uint8_t byte, State& out) const;
  bool feed(State& st, size_t i, uint8_t b) const;
  bool start_value(State& st, size_t i, uint32_t node, uint8_t b) const;
  size_t fork(State& st, size_t i) const;
  bool feed_object(State& st, size_t i, uint8_t b) const;
  bool feed_array(State& st, size_t i, uint8_t b) const;
  bool feed_string(Frame& f, const GrammarNode& n, uint8_t b) const;
  bool feed_number(State& st, size_t i, uint8_t b) const;
  bool feed_integer(State& st, size_t i, uint8_t b) const;
  bool feed_literal(State& st, size_t i, uint8_t b) const;
  bool stack_accepts_end(const Stack& s) const;
  bool in_plain_string(uint32_t* chars_left) const;
  void walk(const VocabIndex::Trie& trie, std::vector<uint8_t>& allowed) const;

  std::shared_ptr<const JsonGrammar> grammar_;
  State state_;
  mutable State scratch_;                   // advance() target in push()
  mutable std::vector<State> walk_states_;  // fill_mask: the state at each trie depth
};

}  // namespace af::runtime
