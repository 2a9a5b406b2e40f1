#include "io/json_util.hpp"

#include <set>
#include <vector>

#include "af/core/error.hpp"

namespace af::io::detail {

nlohmann::json parse_json(std::string_view text, const std::string& origin,
                          const std::string& component, const JsonLimits& limits) {
  using nlohmann::json;
  // One key set per open object, only when duplicates are rejected.
  std::vector<std::set<std::string>> open_objects;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        AF_CHECK(depth < limits.max_depth, ErrorCode::kFormat, component, origin,
                 ": JSON nesting deeper than ", limits.max_depth, " levels");
        if (event == json::parse_event_t::object_start && limits.reject_duplicate_keys)
          open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (limits.reject_duplicate_keys && !open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (limits.reject_duplicate_keys && !open_objects.empty()) {
          const std::string& key = parsed.get_ref<const std::string&>();
          AF_CHECK(open_objects.back().insert(key).second, ErrorCode::kFormat, component, origin,
                   ": duplicate JSON key \"", key, "\"");
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    fail(ErrorCode::kFormat, component, origin, ": invalid JSON: ", e.what());
  }
}

}  // namespace af::io::detail
