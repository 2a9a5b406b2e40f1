// JSON Schema -> JsonGrammar (see af/runtime/json_schema.hpp for what is supported and why).
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "af/core/error.hpp"
#include "runtime/json_grammar.hpp"

namespace af::runtime {

void ByteTrie::insert(std::string_view bytes, int32_t value) {
  uint32_t node = 0;
  if (value >= 0 && value < 64) nodes[0].reach |= uint64_t{1} << value;
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    uint32_t next = child(node, b);
    if (next == kNone) {
      next = static_cast<uint32_t>(nodes.size());
      nodes[node].children.emplace_back(b, next);
      nodes.emplace_back();
    }
    node = next;
    if (value >= 0 && value < 64) nodes[node].reach |= uint64_t{1} << value;
  }
  nodes[node].value = value;
}

namespace {

using nlohmann::json;
constexpr const char* kComponent = "json_schema";

// Keywords that only describe (they constrain nothing we generate).
const std::set<std::string> kAnnotations = {"title",    "description", "default",  "examples",
                                            "$schema",  "$id",         "$comment", "deprecated",
                                            "readOnly", "writeOnly",   "$defs",    "definitions"};
const std::set<std::string> kSupported = {"type",
                                          "enum",
                                          "const",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "minItems",
                                          "maxItems",
                                          "minLength",
                                          "maxLength",
                                          "format",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "$ref"};

class Compiler {
 public:
  Compiler(const json& root, const JsonSchemaLimits& limits) : root_(root), limits_(limits) {
    grammar_ = std::make_shared<JsonGrammar>();
    grammar_->limits = limits;
  }

  std::shared_ptr<const JsonGrammar> run() {
    grammar_->root = compile(root_, "#", 0);
    return grammar_;
  }

  std::shared_ptr<const JsonGrammar> any_object() {
    GrammarNode n;
    n.kind = NodeKind::kObject;
    n.additional = any_value();
    const uint32_t id = reserve("#");
    finish(id, std::move(n));
    grammar_->root = id;
    return grammar_;
  }

 private:
  uint32_t reserve(const std::string& path) {
    AF_CHECK(grammar_->nodes.size() < limits_.max_nodes, ErrorCode::kOutOfRange, kComponent,
             "the schema needs more than ", limits_.max_nodes, " nodes (at ", path, ")");
    grammar_->nodes.emplace_back();
    in_progress_.push_back(true);
    return static_cast<uint32_t>(grammar_->nodes.size() - 1);
  }

  void finish(uint32_t id, GrammarNode n) {
    grammar_->nodes[id] = std::move(n);
    in_progress_[id] = false;
  }

  [[noreturn]] static void invalid(const std::string& path, const std::string& what) {
    fail(ErrorCode::kInvalidArgument, kComponent, what, " at ", path);
  }

  uint32_t compile(const json& s, const std::string& path, int depth) {
    AF_CHECK(depth <= limits_.max_schema_depth, ErrorCode::kOutOfRange, kComponent,
             "the schema nests deeper than ", limits_.max_schema_depth, " levels at ", path);
    if (s.is_boolean()) {
      if (!s.get<bool>()) invalid(path, "the schema 'false' accepts nothing");
      return any_value();
    }
    if (!s.is_object()) invalid(path, "a schema must be an object or a boolean");
    if (auto ref = s.find("$ref"); ref != s.end()) {
      if (!ref->is_string()) invalid(path + "/$ref", "'$ref' must be a string");
      const std::string target = ref->get<std::string>();
      if (auto it = refs_.find(target); it != refs_.end()) return it->second;
      const uint32_t id = reserve(path);
      refs_[target] = id;
      finish(id, build(resolve(target, path), target, depth + 1));
      return id;
    }
    const uint32_t id = reserve(path);
    finish(id, build(s, path, depth));
    return id;
  }

  const json& resolve(const std::string& ref, const std::string& path) {
    if (ref == "#") return root_;
    if (ref.rfind("#/", 0) != 0) {
      fail(ErrorCode::kUnsupported, kComponent,
           "only local '$ref's (\"#/...\") are supported, got '", ref, "' at ", path);
    }
    try {
      const json::json_pointer pointer(ref.substr(1));
      return root_.at(pointer);
    } catch (const json::exception&) {
      invalid(path + "/$ref", "'$ref' '" + ref + "' does not resolve");
    }
  }

  static void check_keywords(const json& s, const std::string& path) {
    for (const auto& [key, value] : s.items()) {
      if (kSupported.count(key) || kAnnotations.count(key)) continue;
      fail(ErrorCode::kUnsupported, kComponent, "unsupported keyword '", key, "' at ", path);
    }
  }

  // Alternatives of an anyOf, flattened so that none is itself an anyOf.
  void add_alternative(std::vector<uint32_t>& out, uint32_t id, const std::string& path) {
    const GrammarNode& n = grammar_->nodes[id];
    if (n.kind != NodeKind::kAnyOf) {
      out.push_back(id);
      return;
    }
    if (in_progress_[id]) {
      invalid(path, "the schema refers to itself without an object or array in between");
    }
    out.insert(out.end(), n.alternatives.begin(), n.alternatives.end());
  }

  GrammarNode build(const json& s, const std::string& path, int depth) {
    if (!s.is_object()) {
      // A $ref to a boolean schema or to a non-schema.
      GrammarNode n;
      add_alternative(n.alternatives, compile(s, path, depth + 1), path);
      return n;
    }
    check_keywords(s, path);
    if (s.contains("$ref")) {
      GrammarNode n;  // a $ref whose target is another $ref
      add_alternative(n.alternatives, compile(s, path, depth + 1), path);
      return n;
    }
    if (auto all = s.find("allOf"); all != s.end()) {
      if (!all->is_array() || all->size() != 1) {
        fail(ErrorCode::kUnsupported, kComponent,
             "'allOf' is supported with exactly one member at ", path);
      }
      GrammarNode n;
      add_alternative(n.alternatives, compile((*all)[0], path + "/allOf/0", depth + 1), path);
      return n;
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto alts = s.find(key);
      if (alts == s.end()) continue;
      if (!alts->is_array() || alts->empty())
        invalid(path + "/" + key, "must be a non-empty array");
      if (s.contains("type") || s.contains("enum") || s.contains("const")) {
        fail(ErrorCode::kUnsupported, kComponent, "'", key,
             "' beside 'type', 'enum' or 'const' is not supported at ", path);
      }
      GrammarNode n;
      for (size_t i = 0; i < alts->size(); ++i) {
        const std::string p = path + "/" + key + "/" + std::to_string(i);
        add_alternative(n.alternatives, compile((*alts)[i], p, depth + 1), p);
      }
      return n;
    }
    if (s.contains("const") || s.contains("enum")) return literal_node(s, path);
    const auto type = s.find("type");
    if (type == s.end()) return build_typed(s, infer_type(s), path, depth);
    if (type->is_string()) return build_typed(s, type->get<std::string>(), path, depth);
    if (!type->is_array() || type->empty()) invalid(path + "/type", "must be a string or array");
    GrammarNode n;
    for (const json& t : *type) {
      if (!t.is_string()) invalid(path + "/type", "must list type names");
      const uint32_t id = reserve(path);
      finish(id, build_typed(s, t.get<std::string>(), path, depth));
      add_alternative(n.alternatives, id, path);
    }
    return n;
  }

  static std::string infer_type(const json& s) {
    if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties"))
      return "object";
    if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) return "array";
    if (s.contains("minLength") || s.contains("maxLength") || s.contains("format")) return "string";
    if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
        s.contains("exclusiveMaximum"))
      return "integer";
    return "any";
  }

  GrammarNode literal_node(const json& s, const std::string& path) {
    GrammarNode n;
    n.kind = NodeKind::kLiteral;
    std::vector<json> values;
    if (auto c = s.find("const"); c != s.end()) {
      values.push_back(*c);
    } else {
      const json& e = s.at("enum");
      if (!e.is_array() || e.empty()) invalid(path + "/enum", "'enum' must be a non-empty array");
      values.assign(e.begin(), e.end());
    }
    size_t bytes = 0;
    for (const json& v : values) {
      const std::string text = v.dump();
      bytes += text.size();
      AF_CHECK(bytes <= limits_.max_enum_bytes, ErrorCode::kOutOfRange, kComponent,
               "the enum/const values exceed ", limits_.max_enum_bytes, " bytes at ", path);
      n.literals.insert(text, 0);
    }
    return n;
  }

  uint32_t get_count(const json& s, const char* key, uint32_t fallback, const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return fallback;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > UINT32_MAX - 1) {
      invalid(path + "/" + key, std::string("'") + key + "' must be a non-negative integer");
    }
    return static_cast<uint32_t>(it->get<int64_t>());
  }

  GrammarNode build_typed(const json& s, const std::string& type, const std::string& path,
                          int depth) {
    GrammarNode n;
    // Keywords of other types do not apply (JSON Schema ignores them); those of this type
    // that cannot be enforced are refused.
    auto refuse = [&](const char* key) {
      if (s.contains(key)) {
        fail(ErrorCode::kUnsupported, kComponent, "unsupported keyword '", key, "' for type '",
             type, "' at ", path);
      }
    };
    if (type == "object") {
      object_node(n, s, path, depth);
    } else if (type == "array") {
      n.kind = NodeKind::kArray;
      auto items = s.find("items");
      n.items = items == s.end() ? any_value() : compile(*items, path + "/items", depth + 1);
      n.min_items = get_count(s, "minItems", 0, path);
      n.max_items = get_count(s, "maxItems", UINT32_MAX, path);
      if (n.min_items > n.max_items) invalid(path + "/minItems", "'minItems' exceeds 'maxItems'");
    } else if (type == "string") {
      n.kind = NodeKind::kString;
      n.min_length = get_count(s, "minLength", 0, path);
      n.max_length = get_count(s, "maxLength", UINT32_MAX, path);
      if (n.min_length > n.max_length) {
        invalid(path + "/minLength", "'minLength' exceeds 'maxLength'");
      }
      if (auto f = s.find("format"); f != s.end()) n.format = parse_format(*f, path);
    } else if (type == "integer") {
      integer_node(n, s, path);
    } else if (type == "number") {
      n.kind = NodeKind::kNumber;
      for (const char* key : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
        refuse(key);
      }
    } else if (type == "boolean") {
      n.kind = NodeKind::kLiteral;
      n.literals.insert("true", 0);
      n.literals.insert("false", 0);
    } else if (type == "null") {
      n.kind = NodeKind::kLiteral;
      n.literals.insert("null", 0);
    } else if (type == "any") {
      add_alternative(n.alternatives, any_value(), path);
    } else {
      invalid(path + "/type", "unknown type '" + type + "'");
    }
    return n;
  }

  void object_node(GrammarNode& n, const json& s, const std::string& path, int depth) {
    n.kind = NodeKind::kObject;
    std::map<std::string, int> index;
    if (auto props = s.find("properties"); props != s.end()) {
      if (!props->is_object()) invalid(path + "/properties", "'properties' must be an object");
      AF_CHECK(props->size() <= limits_.max_properties, ErrorCode::kOutOfRange, kComponent,
               "more than ", limits_.max_properties, " properties at ", path);
      for (const auto& [name, sub] : props->items()) {
        const int i = static_cast<int>(n.properties.size());
        index[name] = i;
        n.properties.push_back(compile(sub, path + "/properties/" + name, depth + 1));
        const std::string quoted = json(name).dump();
        n.keys.insert(std::string_view(quoted).substr(1, quoted.size() - 2), i);
      }
    }
    if (auto req = s.find("required"); req != s.end()) {
      if (!req->is_array()) invalid(path + "/required", "'required' must be an array");
      for (const json& r : *req) {
        if (!r.is_string()) invalid(path + "/required", "'required' must list names");
        auto it = index.find(r.get<std::string>());
        if (it == index.end()) {
          fail(ErrorCode::kUnsupported, kComponent, "required property '", r.get<std::string>(),
               "' has no schema in 'properties' at ", path);
        }
        n.required |= uint64_t{1} << it->second;
      }
    }
    if (auto add = s.find("additionalProperties"); add != s.end()) {
      if (add->is_boolean()) {
        if (add->get<bool>()) n.additional = any_value();
      } else {
        n.additional = compile(*add, path + "/additionalProperties", depth + 1);
      }
    }
  }

  void integer_node(GrammarNode& n, const json& s, const std::string& path) {
    n.kind = NodeKind::kInteger;
    auto bound = [&](const char* key) -> std::optional<double> {
      auto it = s.find(key);
      if (it == s.end()) return std::nullopt;
      if (!it->is_number())
        invalid(path + "/" + key, std::string("'") + key + "' must be a number");
      return it->get<double>();
    };
    // Bounds past +-1e17 are left to the 18-digit cap of generated integers.
    constexpr double kBig = 1e17;
    if (auto v = bound("minimum")) n.minimum = static_cast<int64_t>(std::ceil(std::max(*v, -kBig)));
    if (auto v = bound("exclusiveMinimum")) {
      n.minimum = std::max(n.minimum, static_cast<int64_t>(std::floor(std::max(*v, -kBig))) + 1);
    }
    if (auto v = bound("maximum")) n.maximum = static_cast<int64_t>(std::floor(std::min(*v, kBig)));
    if (auto v = bound("exclusiveMaximum")) {
      n.maximum = std::min(n.maximum, static_cast<int64_t>(std::ceil(std::min(*v, kBig))) - 1);
    }
    if (n.minimum > n.maximum) invalid(path + "/minimum", "no integer lies between the bounds");
  }

  static StringFormat parse_format(const json& f, const std::string& path) {
    if (!f.is_string()) invalid(path + "/format", "'format' must be a string");
    const std::string name = f.get<std::string>();
    if (name == "date") return StringFormat::kDate;
    if (name == "time") return StringFormat::kTime;
    if (name == "date-time") return StringFormat::kDateTime;
    if (name == "uuid") return StringFormat::kUuid;
    fail(ErrorCode::kUnsupported, kComponent, "unsupported format '", name, "' at ", path);
  }

  // Any JSON value: one shared anyOf of object (any keys), array, string, number, literals.
  uint32_t any_value() {
    if (any_ != UINT32_MAX) return any_;
    any_ = reserve("#");
    GrammarNode obj, arr, str, num, lit, any;
    obj.kind = NodeKind::kObject;
    obj.additional = any_;
    arr.kind = NodeKind::kArray;
    arr.items = any_;
    str.kind = NodeKind::kString;
    num.kind = NodeKind::kNumber;
    lit.kind = NodeKind::kLiteral;
    for (const char* v : {"true", "false", "null"}) lit.literals.insert(v, 0);
    for (GrammarNode* part : {&obj, &arr, &str, &num, &lit}) {
      const uint32_t id = reserve("#");
      finish(id, std::move(*part));
      any.alternatives.push_back(id);
    }
    finish(any_, std::move(any));
    return any_;
  }

  const json& root_;
  JsonSchemaLimits limits_;
  std::shared_ptr<JsonGrammar> grammar_;
  std::vector<bool> in_progress_;  // [nodes] reserved, not yet built
  std::map<std::string, uint32_t> refs_;
  uint32_t any_ = UINT32_MAX;
};

}  // namespace

std::shared_ptr<const JsonGrammar> compile_json_schema(const nlohmann::json& schema,
                                                       const JsonSchemaLimits& limits) {
  return Compiler(schema, limits).run();
}

std::shared_ptr<const JsonGrammar> compile_json_schema_text(std::string_view schema_text,
                                                            const JsonSchemaLimits& limits) {
  AF_CHECK(schema_text.size() <= limits.max_schema_bytes, ErrorCode::kOutOfRange, kComponent,
           "the schema is ", schema_text.size(), " bytes, over the limit of ",
           limits.max_schema_bytes);
  nlohmann::json schema;
  try {
    schema = nlohmann::json::parse(schema_text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kInvalidArgument, kComponent, "the schema is not valid JSON: ", e.what());
  }
  return compile_json_schema(schema, limits);
}

std::shared_ptr<const JsonGrammar> wrap_json_grammar(const std::shared_ptr<const JsonGrammar>& g,
                                                     std::string prefix, std::string suffix) {
  auto wrapped = std::make_shared<JsonGrammar>(*g);
  wrapped->prefix = std::move(prefix);
  wrapped->suffix = std::move(suffix);
  return wrapped;
}

std::shared_ptr<const JsonGrammar> json_object_grammar(const JsonSchemaLimits& limits) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return Compiler(kEmpty, limits).any_object();
}

}  // namespace af::runtime
