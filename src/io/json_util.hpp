#pragma once
// JSON parsing shared by the io readers: parse errors become af::Error naming the origin, and
// nesting depth is bounded so that hostile headers cannot exhaust the stack or memory.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace af::io::detail {

struct JsonLimits {
  int max_depth = 64;
  // SafeTensors headers and shard indexes name tensors by key; a repeated key would silently
  // replace an earlier tensor, so those readers reject duplicates. config.json keeps Python's
  // last-one-wins behaviour.
  bool reject_duplicate_keys = false;
};

// Parses `text`; throws af::Error(kFormat, component) naming `origin` and the byte position.
nlohmann::json parse_json(std::string_view text, const std::string& origin,
                          const std::string& component, const JsonLimits& limits = {});

}  // namespace af::io::detail
