#pragma once
// JSON parsing shared by the io readers and the server: parse errors become af::Error naming the
// origin, and nesting depth and the number of values are bounded so that hostile input cannot
// exhaust the stack or memory. Parsing is linear in the input size.
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace af::io::detail {

struct JsonLimits {
  int max_depth = 64;  // open arrays/objects at once
  // Values (scalars, arrays and objects) in one document. A 256k-token tokenizer.json holds about
  // 2 million; the default leaves room for larger ones while bounding what a file can make us
  // allocate (each value costs 16 bytes plus its container's bookkeeping).
  size_t max_elements = size_t{1} << 24;
  // SafeTensors headers and shard indexes name tensors by key; a repeated key would silently
  // replace an earlier tensor, so those readers reject duplicates. config.json keeps Python's
  // last-one-wins behaviour.
  bool reject_duplicate_keys = false;
};

// Parses `text`; throws af::Error(kFormat, component) naming `origin` and the byte position.
nlohmann::json parse_json(std::string_view text, const std::string& origin,
                          const std::string& component, const JsonLimits& limits = {});

}  // namespace af::io::detail
