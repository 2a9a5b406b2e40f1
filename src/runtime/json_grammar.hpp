#pragma once
// The compiled form of a JSON Schema (af/runtime/json_schema.hpp): value nodes that
// JsonMatcher walks byte by byte. Node ids index JsonGrammar::nodes; recursive schemas ($ref)
// are cycles in this graph.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "af/runtime/json_schema.hpp"

namespace af::runtime {

// A set of byte strings (object keys in their JSON-escaped form, serialized enum values) as a
// trie; node 0 is the root.
struct ByteTrie {
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Node {
    std::vector<std::pair<uint8_t, uint32_t>> children;  // (byte, node), unsorted
    int32_t value = -1;  // >= 0: a string ends here (key: property index)
    uint64_t reach = 0;  // keys: bit i set when property i ends at or below this node
  };
  std::vector<Node> nodes = std::vector<Node>(1);

  void insert(std::string_view bytes, int32_t value);
  uint32_t child(uint32_t node, uint8_t b) const {
    for (const auto& [byte, next] : nodes[node].children) {
      if (byte == b) return next;
    }
    return kNone;
  }
};

enum class NodeKind : uint8_t { kObject, kArray, kString, kNumber, kInteger, kLiteral, kAnyOf };
enum class StringFormat : uint8_t { kNone, kDate, kTime, kDateTime, kUuid };

struct GrammarNode {
  NodeKind kind = NodeKind::kAnyOf;
  // kObject
  std::vector<uint32_t> properties;  // value node of property i (key i of `keys`)
  uint64_t required = 0;             // bit i: property i is required
  int64_t additional = -1;           // value node of other keys; -1: none allowed
  ByteTrie keys;                     // JSON-escaped property names -> property index
  // kArray
  uint32_t items = 0;
  uint32_t min_items = 0, max_items = UINT32_MAX;
  // kString
  uint32_t min_length = 0, max_length = UINT32_MAX;  // in characters (escapes count as one)
  StringFormat format = StringFormat::kNone;
  // kInteger: inclusive bounds
  int64_t minimum = INT64_MIN, maximum = INT64_MAX;
  // kLiteral: the serialized values (compact JSON, as nlohmann::json::dump writes them)
  ByteTrie literals;
  // kAnyOf: the alternatives, none of them kAnyOf (flattened when compiled)
  std::vector<uint32_t> alternatives;
};

class JsonGrammar {
 public:
  std::vector<GrammarNode> nodes;
  uint32_t root = 0;
  JsonSchemaLimits limits;
  // Literal text around the value (wrap_json_grammar), e.g. a tool-call syntax's markers.
  std::string prefix, suffix;
};

}  // namespace af::runtime
