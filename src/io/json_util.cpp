#include "io/json_util.hpp"

#include <utility>
#include <vector>

#include "af/core/error.hpp"

namespace af::io::detail {
namespace {

using nlohmann::json;

// Builds the document from nlohmann's SAX events. nlohmann's own callback parser (json::parse
// with a callback) rescans the parent container after every closed object or array, which made
// a body of n small objects cost O(n^2); this builder does constant work per event (plus a map
// look-up per key), and enforces the limits as it goes, before the values are allocated.
class DomBuilder {
 public:
  DomBuilder(const std::string& origin, const std::string& component, const JsonLimits& limits)
      : origin_(origin), component_(component), limits_(limits) {}

  json take() { return std::move(root_); }

  bool null() { return add(nullptr) != nullptr; }
  bool boolean(bool v) { return add(v) != nullptr; }
  bool number_integer(json::number_integer_t v) { return add(v) != nullptr; }
  bool number_unsigned(json::number_unsigned_t v) { return add(v) != nullptr; }
  bool number_float(json::number_float_t v, const json::string_t&) { return add(v) != nullptr; }
  bool string(json::string_t& v) { return add(std::move(v)) != nullptr; }
  bool binary(json::binary_t& v) { return add(json::binary(std::move(v))) != nullptr; }

  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    json& object = *open_.back();
    // std::map::find: logarithmic, so duplicate detection stays O(n log n) overall.
    if (limits_.reject_duplicate_keys) {
      AF_CHECK(object.find(k) == object.end(), ErrorCode::kFormat, component_, origin_,
               ": duplicate JSON key \"", k, "\"");
    }
    // operator[] keeps the last of repeated keys, as Python's json module does.
    pending_ = &object[std::move(k)];
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception& e) {
    fail(ErrorCode::kFormat, component_, origin_, ": invalid JSON: ", e.what());
  }

 private:
  // Places `v` where the grammar says it goes and returns its address there.
  json* add(json&& v) {
    ++elements_;
    AF_CHECK(elements_ <= limits_.max_elements, ErrorCode::kFormat, component_, origin_,
             ": JSON holds more than ", limits_.max_elements, " values");
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *pending_ = std::move(v);
    return pending_;
  }

  bool open(json&& container) {
    AF_CHECK(open_.size() < static_cast<size_t>(limits_.max_depth), ErrorCode::kFormat, component_,
             origin_, ": JSON nesting deeper than ", limits_.max_depth, " levels");
    // A pointer into the parent stays valid: arrays only grow again after this child closes,
    // and std::map nodes never move.
    open_.push_back(add(std::move(container)));
    return true;
  }

  bool close() {
    open_.pop_back();
    return true;
  }

  const std::string& origin_;
  const std::string& component_;
  const JsonLimits& limits_;
  json root_;
  std::vector<json*> open_;  // the arrays and objects not yet closed, outermost first
  json* pending_ = nullptr;  // where the value after the last key goes
  size_t elements_ = 0;
};

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& origin,
                          const std::string& component, const JsonLimits& limits) {
  DomBuilder builder(origin, component, limits);
  try {
    // Strict: one value, then only whitespace. Errors arrive through parse_error (thrown there).
    json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json, true);
  } catch (const json::exception& e) {
    fail(ErrorCode::kFormat, component, origin, ": invalid JSON: ", e.what());
  }
  return builder.take();
}

}  // namespace af::io::detail
