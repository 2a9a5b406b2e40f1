#pragma once
// Values of the template engine, with Python's semantics: lists and dicts are shared by
// reference (as Python objects are), dicts keep insertion order, printing follows str()/repr().
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template/cost.hpp"

namespace af::tok::jinja {

// Immutable string contents shared by every copy of a value: looking a variable up, iterating a
// list or passing an argument copies a pointer, not the bytes, so only operations that build new
// strings cost time and memory in proportion to their size (and are charged for it).
class Text {
 public:
  Text() = default;
  Text(std::string s)  // NOLINT(google-explicit-constructor): values are built from strings
      : data_(s.empty() ? nullptr : std::make_shared<const std::string>(std::move(s))) {}
  Text(const char* s) : Text(std::string(s)) {}  // NOLINT(google-explicit-constructor)

  const std::string& str() const { return data_ ? *data_ : empty_string(); }
  operator const std::string&() const { return str(); }  // NOLINT(google-explicit-constructor)
  operator std::string_view() const { return str(); }    // NOLINT(google-explicit-constructor)
  size_t size() const { return str().size(); }
  bool empty() const { return !data_ || data_->empty(); }
  bool same_storage(const Text& other) const { return data_ == other.data_; }

 private:
  static const std::string& empty_string();
  std::shared_ptr<const std::string> data_;
};

inline std::string operator+(const std::string& a, const Text& b) { return a + b.str(); }
inline std::string operator+(const char* a, const Text& b) { return a + b.str(); }
inline std::string operator+(const Text& a, const std::string& b) { return a.str() + b; }
inline std::string operator+(const Text& a, const char* b) { return a.str() + b; }

class Interpreter;
struct Value;
struct Dict;
using List = std::vector<Value>;

enum class Kind : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kTuple,
  kGenerator,  // what Jinja's map/select/... return: iterable once, no len(), not JSON, truthy
  kDict,
  kNamespace,
  kCallable,
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&, Interpreter&)> fn;
};

struct Value {
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  Text text;  // string contents; for undefined values, what was looked up (for messages)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<const Callable> callable;
  // Nesting of lists/tuples/dicts below this value (namespaces count as leaves: they are the
  // only mutable containers and are cut loose after rendering). Bounded so that destruction and
  // printing never recurse deeply.
  uint32_t depth = 0;
  // A string marked safe (Jinja's Markup, from |safe or |e): `markup + str` HTML-escapes the
  // plain operand, as transformers' environment does.
  bool markup = false;

  static Value undefined(std::string what = {});
  static Value none();
  static Value from_bool(bool b);
  static Value from_int(int64_t i);
  static Value from_float(double f);
  static Value from_string(std::string s);
  static Value new_list(List items = {});
  static Value new_tuple(List items);
  static Value new_generator(List items);
  static Value new_dict();
  static Value new_namespace();
  static Value function(std::string name, std::function<Value(CallArgs&, Interpreter&)> fn);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const {
    return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool;
  }
  bool is_sequence() const { return kind == Kind::kList || kind == Kind::kTuple; }
  bool is_mapping() const { return kind == Kind::kDict; }
  bool truthy() const;
  double as_double() const;       // numbers only
  const char* type_name() const;  // Python's type names, for error messages
};

constexpr uint32_t kMaxValueDepth = 256;
// Recomputes `depth` of a list, tuple or dict from its direct items; throws std::length_error
// beyond kMaxValueDepth.
void update_depth(Value& container);

struct Dict {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value value);
};

// Python str() and repr(); printing charges the current meter per node and checks the size as it
// grows, so deeply shared (exponentially large) values fail early instead of being built.
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
std::string float_repr(double x);
std::string string_repr(std::string_view s);

// Python ==, as Jinja compares; charged per node and per 64 bytes compared.
bool values_equal(const Value& a, const Value& b);

Value from_json(const nlohmann::ordered_json& j);

struct JsonOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string indent;  // indentation unit; used when has_indent
  bool has_indent = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};
// Python json.dumps; throws std::invalid_argument for values JSON cannot hold (undefined,
// callables, namespaces), which the interpreter turns into a located error.
std::string to_json(const Value& v, const JsonOptions& options);

// UTF-8 helpers: code points for Python-style length, indexing and slicing.
std::u32string utf8_decode(std::string_view s);
// Without decoding into a buffer: the number of code points, and the byte offset of code point
// `index` (clamped to the end), as utf8_decode counts them.
size_t utf8_length(std::string_view s);
size_t utf8_offset(std::string_view s, size_t index);
std::string utf8_encode(std::u32string_view s);
void append_utf8(std::string& out, char32_t c);

}  // namespace af::tok::jinja
