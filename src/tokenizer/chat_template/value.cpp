#include "tokenizer/chat_template/value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace af::tok::jinja {

const std::string& Text::empty_string() {
  static const std::string kEmpty;
  return kEmpty;
}

namespace {
// Every container slot a rendering creates is charged as memory (and its steps).
void charge_slots(size_t n) { charge_allocation(n * sizeof(Value)); }
}  // namespace

Value Value::undefined(std::string what) {
  Value v;
  v.text = std::move(what);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::from_bool(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.boolean = b;
  return v;
}
Value Value::from_int(int64_t i) {
  Value v;
  v.kind = Kind::kInt;
  v.integer = i;
  return v;
}
Value Value::from_float(double f) {
  Value v;
  v.kind = Kind::kFloat;
  v.number = f;
  return v;
}
Value Value::from_string(std::string s) {
  check_string_size(s.size());
  charge_allocation(s.size());
  Value v;
  v.kind = Kind::kString;
  v.text = std::move(s);
  return v;
}
Value Value::new_list(List items) {
  Value v;
  v.kind = Kind::kList;
  charge_slots(items.size());
  v.list = std::make_shared<List>(std::move(items));
  update_depth(v);
  return v;
}
Value Value::new_tuple(List items) {
  Value v;
  v.kind = Kind::kTuple;
  charge_slots(items.size());
  v.list = std::make_shared<List>(std::move(items));
  update_depth(v);
  return v;
}

void update_depth(Value& container) {
  uint32_t deepest = 0;
  if (container.list)
    for (const Value& item : *container.list) deepest = std::max(deepest, item.depth);
  if (container.kind == Kind::kDict)
    for (const auto& entry : container.dict->entries)
      deepest = std::max(deepest, entry.second.depth);
  container.depth = deepest + 1;
  if (container.depth > kMaxValueDepth)
    throw std::length_error("values nested deeper than " + std::to_string(kMaxValueDepth) +
                            " levels");
}
Value Value::new_generator(List items) {
  Value v;
  v.kind = Kind::kGenerator;
  charge_slots(items.size());
  v.list = std::make_shared<List>(std::move(items));
  update_depth(v);
  return v;
}
Value Value::new_dict() {
  Value v;
  v.kind = Kind::kDict;
  v.dict = std::make_shared<Dict>();
  return v;
}
Value Value::new_namespace() {
  Value v;
  v.kind = Kind::kNamespace;
  v.dict = std::make_shared<Dict>();
  return v;
}
Value Value::function(std::string name, std::function<Value(CallArgs&, Interpreter&)> fn) {
  Value v;
  v.kind = Kind::kCallable;
  v.callable = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return boolean;
    case Kind::kInt:
      return integer != 0;
    case Kind::kFloat:
      return number != 0;
    case Kind::kString:
      return !text.empty();
    case Kind::kList:
    case Kind::kTuple:
      return !list->empty();
    case Kind::kDict:
      return !dict->entries.empty();
    case Kind::kGenerator:
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

double Value::as_double() const {
  switch (kind) {
    case Kind::kBool:
      return boolean ? 1 : 0;
    case Kind::kInt:
      return static_cast<double>(integer);
    case Kind::kFloat:
      return number;
    default:
      return 0;
  }
}

const char* Value::type_name() const {
  switch (kind) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kGenerator:
      return "generator";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "object";
}

// Lookups scan the entries (template dicts are small); large dicts pay for the scan.
const Value* Dict::find(std::string_view key) const {
  charge_steps(1 + entries.size() / 16);
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}
Value* Dict::find(std::string_view key) {
  charge_steps(1 + entries.size() / 16);
  for (auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}
void Dict::set(const std::string& key, Value value) {
  if (Value* slot = find(key)) {
    *slot = std::move(value);
  } else {
    charge_allocation(sizeof(entries[0]) + key.size());
    entries.emplace_back(key, std::move(value));
  }
}

// ---- UTF-8 ----------------------------------------------------------------------------------
// Bytes that are not valid UTF-8 decode to U+DC80..U+DCFF and encode back to the same byte (as
// Python's surrogateescape), so slicing never alters or loses bytes.

namespace {

// Decodes the character at s[i]: its byte length, and the code point through `cp`. A byte that
// does not start a valid sequence is one character, U+DC80..U+DCFF.
size_t decode_at(std::string_view s, size_t i, char32_t* cp_out) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = 0;
  char32_t cp = 0;
  if (b0 < 0x80) {
    len = 1;
    cp = b0;
  } else if ((b0 & 0xE0) == 0xC0 && b0 >= 0xC2) {
    len = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
  }
  bool ok = len > 0 && i + static_cast<size_t>(len) <= s.size();
  for (int k = 1; ok && k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) ok = false;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (ok && len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
  if (ok && len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ok = false;
  if (!ok) {
    *cp_out = 0xDC00 + b0;
    return 1;
  }
  *cp_out = cp;
  return static_cast<size_t>(len);
}

}  // namespace

std::u32string utf8_decode(std::string_view s) {
  charge_bytes(s.size() * sizeof(char32_t));  // by the bytes written: a fresh UTF-32 buffer
  std::u32string out;
  out.reserve(s.size());
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    i += decode_at(s, i, &cp);
    out.push_back(cp);
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  charge_bytes(s.size());
  size_t n = 0;
  char32_t cp = 0;
  for (size_t i = 0; i < s.size(); ++n) i += decode_at(s, i, &cp);
  return n;
}

size_t utf8_offset(std::string_view s, size_t index) {
  size_t i = 0;
  char32_t cp = 0;
  for (size_t k = 0; k < index && i < s.size(); ++k) i += decode_at(s, i, &cp);
  charge_bytes(i);
  return i;
}

void append_utf8(std::string& out, char32_t c) {
  if (c >= 0xDC80 && c <= 0xDCFF) {
    out.push_back(static_cast<char>(c - 0xDC00));
  } else if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  charge_bytes(s.size() * sizeof(char32_t));
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// ---- printing -------------------------------------------------------------------------------

std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // shortest round-trip digits, e.g. "-1.2345e+02"
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e + 1));
  // Python's repr: positional notation for 1e-4 <= |x| < 1e16, otherwise scientific.
  if (exp < -4 || exp >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return out + ebuf;
  }
  if (exp >= 0) {
    const auto int_len = static_cast<size_t>(exp) + 1;
    std::string int_part = digits.substr(0, std::min(int_len, digits.size()));
    if (int_part.size() < int_len) int_part.append(int_len - int_part.size(), '0');
    std::string frac = digits.size() > int_len ? digits.substr(int_len) : "0";
    return sign + int_part + "." + frac;
  }
  return sign + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
}

namespace {

// Python's str.isprintable() for the characters templates meet; other non-ASCII characters are
// treated as printable.
bool printable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c >= 0x80 && c <= 0xA0) return false;
  if (c == 0xAD) return false;
  if (c >= 0xD800 && c <= 0xDFFF) return false;
  if (c == 0x2028 || c == 0x2029 || (c >= 0x200B && c <= 0x200F) || c == 0xFEFF) return false;
  return true;
}

void append_hex(std::string& out, char prefix, unsigned value, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\%c%0*x", prefix, digits, value);
  out += buf;
}

}  // namespace

std::string string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : utf8_decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (printable(c)) {
      append_utf8(out, c);
    } else if (c < 0x100) {
      append_hex(out, 'x', c, 2);
    } else if (c < 0x10000) {
      append_hex(out, 'u', c, 4);
    } else {
      append_hex(out, 'U', c, 8);
    }
  }
  out += quote;
  return out;
}

namespace {

// Namespaces can hold themselves, so printing is bounded rather than assumed acyclic.
constexpr int kMaxPrintDepth = 1024;

void append_repr(std::string& out, const Value& v, int level);

void append_sequence(std::string& out, const Value& v, int level) {
  const bool tuple = v.kind == Kind::kTuple;
  out += tuple ? '(' : '[';
  bool first = true;
  for (const Value& item : *v.list) {
    if (!first) out += ", ";
    first = false;
    append_repr(out, item, level + 1);
  }
  if (tuple && v.list->size() == 1) out += ',';
  out += tuple ? ')' : ']';
}

void append_dict(std::string& out, const Dict& d, int level) {
  out += '{';
  bool first = true;
  for (const auto& [k, item] : d.entries) {
    if (!first) out += ", ";
    first = false;
    out += string_repr(k);
    out += ": ";
    append_repr(out, item, level + 1);
  }
  out += '}';
}

void append_repr(std::string& out, const Value& v, int level) {
  if (level > kMaxPrintDepth) throw std::length_error("values nested too deeply to print");
  // Shared sublists make a value's printed form exponential in its size: pay per node and stop
  // as soon as the text outgrows the string limit.
  charge_steps(1);
  check_string_size(out.size());
  switch (v.kind) {
    case Kind::kString:
      out += string_repr(v.text);
      return;
    case Kind::kList:
    case Kind::kTuple:
      append_sequence(out, v, level);
      return;
    case Kind::kDict:
      append_dict(out, *v.dict, level);
      return;
    case Kind::kNamespace:
      out += "<Namespace ";
      append_dict(out, *v.dict, level);
      out += ">";
      return;
    case Kind::kUndefined:
      out += "Undefined";
      return;
    default:
      out += to_str(v);
  }
}

}  // namespace

std::string to_repr(const Value& v) {
  std::string out;
  append_repr(out, v, 0);
  return out;
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return {};
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return v.boolean ? "True" : "False";
    case Kind::kInt:
      return std::to_string(v.integer);
    case Kind::kFloat:
      return float_repr(v.number);
    case Kind::kString:
      charge_bytes(v.text.size());
      return v.text;
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kDict:
      return to_repr(v);
    case Kind::kNamespace:
      return to_repr(v);
    case Kind::kGenerator:
      return "<generator object>";
    case Kind::kCallable:
      return "<function " + v.callable->name + ">";
  }
  return {};
}

bool values_equal(const Value& a, const Value& b) {
  // Lists and dicts are bounded by kMaxValueDepth; namespaces compare by identity. Shared
  // sublists can make the walk exponential, hence the charge per node.
  charge_steps(1);
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::kFloat && b.kind != Kind::kFloat) {
      const int64_t x = a.kind == Kind::kBool ? a.boolean : a.integer;
      const int64_t y = b.kind == Kind::kBool ? b.boolean : b.integer;
      return x == y;
    }
    return a.as_double() == b.as_double();
  }
  if (a.is_sequence() && b.is_sequence()) {
    if (a.kind != b.kind || a.list->size() != b.list->size()) return false;
    if (a.list == b.list) return true;  // Python compares items by identity first
    for (size_t i = 0; i < a.list->size(); ++i)
      if (!values_equal((*a.list)[i], (*b.list)[i])) return false;
    return true;
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      if (a.text.same_storage(b.text)) return true;
      if (a.text.size() != b.text.size()) return false;
      charge_bytes(a.text.size());
      return a.text.str() == b.text.str();
    case Kind::kDict: {
      if (a.dict->entries.size() != b.dict->entries.size()) return false;
      if (a.dict == b.dict) return true;
      for (const auto& [k, item] : a.dict->entries) {
        const Value* other = b.dict->find(k);
        if (!other || !values_equal(item, *other)) return false;
      }
      return true;
    }
    case Kind::kNamespace:
      return a.dict == b.dict;
    case Kind::kGenerator:
      return a.list == b.list;
    case Kind::kCallable:
      return a.callable == b.callable;
    default:
      return false;
  }
}

namespace {
Value from_json_at(const nlohmann::ordered_json& j, uint32_t level);
}

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

namespace {
Value from_json_at(const nlohmann::ordered_json& j, uint32_t level) {
  if (level > kMaxValueDepth) throw std::length_error("context JSON nested too deeply");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::from_bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::from_int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::from_float(static_cast<double>(u));
      return Value::from_int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::from_float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::from_string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(from_json_at(item, level + 1));
      return Value::new_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = Value::new_dict();
      for (const auto& [k, item] : j.items()) d.dict->set(k, from_json_at(item, level + 1));
      update_depth(d);
      return d;
    }
    default:
      return Value::none();
  }
}
}  // namespace

// ---- json.dumps -----------------------------------------------------------------------------

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            append_hex(out, 'u', 0xD800 + (v >> 10), 4);
            append_hex(out, 'u', 0xDC00 + (v & 0x3FF), 4);
          } else {
            append_hex(out, 'u', c, 4);
          }
        } else {
          append_utf8(out, c);
        }
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& v, const JsonOptions& o, int level) {
  if (level > 512) throw std::invalid_argument("nesting too deep for tojson");
  charge_steps(1);  // as printing: per node, with the size checked as the text grows
  check_string_size(out.size());
  auto newline = [&](int lvl) {
    if (!o.has_indent) return;
    // A long indent string repeated per level grows the text fast: check before appending.
    check_string_size(out.size() + 1 + static_cast<size_t>(lvl) * o.indent.size());
    charge_bytes(static_cast<size_t>(lvl) * o.indent.size());
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += o.indent;
  };
  switch (v.kind) {
    case Kind::kNone:
      out += "null";
      return;
    case Kind::kBool:
      out += v.boolean ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(v.integer);
      return;
    case Kind::kFloat:
      if (std::isnan(v.number)) {
        out += "NaN";
      } else if (std::isinf(v.number)) {
        out += v.number < 0 ? "-Infinity" : "Infinity";
      } else {
        out += float_repr(v.number);
      }
      return;
    case Kind::kString:
      json_string(out, v.text, o.ensure_ascii);
      return;
    case Kind::kList:
    case Kind::kTuple: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const Value& item : *v.list) {
        if (!first) out += o.item_separator;
        first = false;
        newline(level + 1);
        json_value(out, item, o, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case Kind::kDict: {
      if (v.dict->entries.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.dict->entries) entries.push_back(&e);
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      out += '{';
      bool first = true;
      for (const auto* e : entries) {
        if (!first) out += o.item_separator;
        first = false;
        newline(level + 1);
        json_string(out, e->first, o.ensure_ascii);
        out += o.key_separator;
        json_value(out, e->second, o, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default:
      throw std::invalid_argument(std::string("Object of type ") + v.type_name() +
                                  " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  json_value(out, v, options, 0);
  return out;
}

}  // namespace af::tok::jinja
