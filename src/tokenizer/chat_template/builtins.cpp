// Filters, tests, methods and operators with Python / Jinja semantics.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <stdexcept>

#include "tokenizer/chat_template/interpreter.hpp"

namespace af::tok::jinja {
namespace {

// ---- argument helpers ---------------------------------------------------------------------------

// Python-style binding of positional and keyword arguments to named parameters.
class Params {
 public:
  Params(Interpreter& in, const char* fn, CallArgs& args, std::initializer_list<const char*> names)
      : in_(in), fn_(fn), names_(names), values_(names.size()), given_(names.size(), false) {
    if (args.positional.size() > names_.size())
      in.fail(std::string(fn) + "() got too many positional arguments");
    for (size_t i = 0; i < args.positional.size(); ++i) {
      values_[i] = args.positional[i];
      given_[i] = true;
    }
    for (auto& [k, v] : args.keyword) {
      size_t i = 0;
      while (i < names_.size() && k != names_[i]) ++i;
      if (i == names_.size())
        in.fail(std::string(fn) + "() got an unexpected keyword argument '" + k + "'");
      if (given_[i]) in.fail(std::string(fn) + "() got multiple values for argument '" + k + "'");
      values_[i] = v;
      given_[i] = true;
    }
  }
  bool given(size_t i) const { return given_[i] && !values_[i].is_undefined(); }
  const Value& get(size_t i) const { return values_[i]; }
  bool flag(size_t i, bool fallback) const { return given(i) ? values_[i].truthy() : fallback; }
  int64_t integer(size_t i, int64_t fallback) const {
    if (!given(i) || values_[i].is_none()) return fallback;
    const Value& v = values_[i];
    if (v.kind == Kind::kInt) return v.integer;
    if (v.kind == Kind::kBool) return v.boolean;
    in_.fail(std::string(fn_) + "() argument '" + names_[i] + "' must be an integer");
  }
  std::string string(size_t i, const std::string& fallback) const {
    if (!given(i)) return fallback;
    if (!values_[i].is_string())
      in_.fail(std::string(fn_) + "() argument '" + names_[i] + "' must be a string");
    return values_[i].text;
  }

 private:
  Interpreter& in_;
  const char* fn_;
  std::vector<const char*> names_;
  std::vector<Value> values_;
  std::vector<bool> given_;
};

const std::string& need_string(Interpreter& in, const Value& v, const char* what) {
  if (!v.is_string()) {
    if (v.is_undefined()) in.fail(v.text.empty() ? "undefined value" : v.text.str());
    in.fail(std::string(what) + " expects a string, got '" + v.type_name() + "'");
  }
  return v.text;
}

// ---- strings ------------------------------------------------------------------------------------

bool py_isspace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}
bool is_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0xC0; }
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
// One-to-one case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (the
// documented coverage); other characters are left as they are.
char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xE0) return c == 0xB5 ? 0x39C : c;
  if (c <= 0xFE) return c == 0xF7 ? c : c - 0x20;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 0) ? c - 1 : c;
    if (c == 0x138 || c == 0x149 || c == 0x130) return c;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0x3B1 && c <= 0x3CB) return c == 0x3C2 ? 0x3A3 : c - 0x20;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 0x3F;
  if (c >= 0x3AC && c <= 0x3AF) return c == 0x3AC ? 0x386 : c - 0x25;
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  return c;
}
char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE) return c == 0xD7 ? c : c + 0x20;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F) {
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB) return c == 0x3A2 ? c : c + 0x20;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 0x3F;
  if (c == 0x3CF) return 0x3D7;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  return c;
}
bool is_word_char(char32_t c) {
  return is_alpha(c) || is_digit(c) || c == '_' || (c >= 0x80 && !py_isspace(c));
}

std::string map_chars(const std::string& s, char32_t (*f)(char32_t)) {
  std::u32string u = utf8_decode(s);
  for (char32_t& c : u) c = f(c);
  return utf8_encode(u);
}

std::string strip_chars(const std::string& s, const Value& chars, bool left, bool right) {
  std::u32string u = utf8_decode(s);
  std::u32string set;
  const bool whitespace = chars.is_none() || chars.is_undefined();
  if (!whitespace) set = utf8_decode(chars.text);
  // Sorted for O(log m) membership: a linear scan per character is O(n * m) for long `chars`.
  std::sort(set.begin(), set.end());
  auto strip = [&](char32_t c) {
    return whitespace ? py_isspace(c) : std::binary_search(set.begin(), set.end(), c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip(u[b])) ++b;
  if (right)
    while (e > b && strip(u[e - 1])) --e;
  return utf8_encode(u.substr(b, e - b));
}

std::string py_replace(Interpreter& in, const std::string& s, const std::string& old,
                       const std::string& repl, int64_t count) {
  std::string out;
  if (old.empty()) {
    const std::u32string u = utf8_decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (i < u.size()) append_utf8(out, u[i]);
      in.check_size(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = find_text(s, old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += repl;
    in.check_size(out.size());
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  in.check_size(out.size());
  return out;
}

// Splits at the first `maxsplit` separators (all when negative), left to right.
std::vector<std::string> split_forward(const std::string& s, const std::string& d,
                                       int64_t maxsplit) {
  std::vector<std::string> pieces;
  size_t pos = 0;
  int64_t done = 0;
  while (maxsplit < 0 || done < maxsplit) {
    const size_t hit = find_text(s, d, pos);
    if (hit == std::string::npos) break;
    pieces.push_back(s.substr(pos, hit - pos));
    pos = hit + d.size();
    ++done;
  }
  pieces.push_back(s.substr(pos));
  return pieces;
}

List py_split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  List parts;
  if (sep.is_none() || sep.is_undefined()) {
    // Runs of whitespace separate; leading and trailing whitespace is dropped.
    const std::u32string u = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < u.size()) {
      while (i < u.size() && py_isspace(u[i])) ++i;
      if (i >= u.size()) break;
      size_t j = i;
      while (j < u.size() && !py_isspace(u[j])) ++j;
      words.emplace_back(i, j);
      i = j;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      if (!from_right) {
        const auto keep = static_cast<size_t>(maxsplit);
        for (size_t k = 0; k < keep; ++k)
          parts.push_back(Value::from_string(
              utf8_encode(u.substr(words[k].first, words[k].second - words[k].first))));
        // The remainder is kept as is, trailing whitespace included.
        parts.push_back(Value::from_string(utf8_encode(u.substr(words[keep].first))));
      } else {
        const size_t first_kept = words.size() - static_cast<size_t>(maxsplit);
        parts.push_back(Value::from_string(utf8_encode(u.substr(0, words[first_kept - 1].second))));
        for (size_t k = first_kept; k < words.size(); ++k)
          parts.push_back(Value::from_string(
              utf8_encode(u.substr(words[k].first, words[k].second - words[k].first))));
      }
      return parts;
    }
    for (const auto& [b, e] : words)
      parts.push_back(Value::from_string(utf8_encode(u.substr(b, e - b))));
    return parts;
  }
  if (!from_right) {
    for (std::string& p : split_forward(s, sep.text, maxsplit))
      parts.push_back(Value::from_string(std::move(p)));
    return parts;
  }
  // rsplit takes the rightmost separators first: the same as splitting the reversed bytes by the
  // reversed separator, which keeps the search linear.
  charge_bytes(s.size());
  const std::string reversed(s.rbegin(), s.rend());
  const std::string& d = sep.text;
  std::vector<std::string> pieces =
      split_forward(reversed, std::string(d.rbegin(), d.rend()), maxsplit);
  for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
    std::reverse(it->begin(), it->end());
    parts.push_back(Value::from_string(std::move(*it)));
  }
  return parts;
}

// Python's str.splitlines() (without keepends).
std::vector<std::u32string> split_lines(const std::u32string& u) {
  std::vector<std::u32string> lines;
  size_t start = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    const char32_t c = u[i];
    if (c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
        c == 0x2028 || c == 0x2029) {
      lines.push_back(u.substr(start, i - start));
      if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < u.size()) lines.push_back(u.substr(start));
  return lines;
}

std::string py_title_method(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (char32_t& c : u) {
    const bool cased = is_alpha(c);
    c = cased ? (prev_cased ? to_lower(c) : to_upper(c)) : c;
    prev_cased = cased;
  }
  return utf8_encode(u);
}

// Jinja's title filter: words start after runs of whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool word_start = true;
  for (char32_t& c : u) {
    const bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      word_start = true;
      continue;
    }
    c = word_start ? to_upper(c) : to_lower(c);
    word_start = false;
  }
  return utf8_encode(u);
}

std::string capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
  return utf8_encode(u);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value markup_string(std::string s) {
  Value v = Value::from_string(std::move(s));
  v.markup = true;
  return v;
}

// A string result that keeps the subject's Markup flag (methods Markup overrides).
Value like(const Value& subject, std::string s) {
  Value v = Value::from_string(std::move(s));
  v.markup = subject.is_string() && subject.markup;
  return v;
}

std::string escaped_text(const Value& v) {
  return v.is_string() && v.markup ? v.text.str() : html_escape(to_str(v));
}

// A printf conversion's width and precision ("%-08.3") cost time and memory in proportion to
// their value: refuse those beyond the string limit and charge the rest before formatting.
void check_width(Interpreter& in, const std::string& spec) {
  uint64_t total = 0, number = 0;
  for (char c : spec) {
    if (c >= '0' && c <= '9') {
      number = number * 10 + static_cast<uint64_t>(c - '0');  // spec is at most 12 characters
    } else {
      total += number;
      number = 0;
    }
  }
  total += number;
  in.check_size(total);
  charge_allocation(total);
}

// snprintf into a buffer of the size the conversion needs (check_width bounded it).
template <class T>
std::string c_format(const std::string& format, T value) {
  const int n = std::snprintf(nullptr, 0, format.c_str(), value);
  if (n <= 0) return {};
  std::string buf(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(buf.data(), buf.size(), format.c_str(), value);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// printf-style formatting: "%s" % x, "%d", "%r", "%f", "%.2f", "%x", "%%", "%(name)s".
std::string percent_format(Interpreter& in, const std::string& fmt, const Value& args,
                           bool escape_args = false) {
  List positional;
  const Dict* mapping = nullptr;
  // As Python: a tuple spreads; anything else is the single argument; dicts (and lists, which
  // Python also treats as mappings here) excuse unused arguments.
  if (args.kind == Kind::kTuple) {
    in.charge(args.list->size());
    positional = *args.list;
  } else {
    positional.push_back(args);
  }
  if (args.kind == Kind::kDict) mapping = args.dict.get();
  const bool mapping_like =
      args.kind == Kind::kDict || args.kind == Kind::kList || args.kind == Kind::kUndefined;
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) in.fail("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos || !mapping) in.fail("format requires a mapping");
      arg = mapping->find(fmt.substr(i + 1, close - i - 1));
      if (!arg) in.fail("format key '" + fmt.substr(i + 1, close - i - 1) + "' missing");
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::string("-+ #0123456789.").find(fmt[i]) != std::string::npos &&
           spec.size() < 12)
      spec += fmt[i++];
    if (i >= fmt.size()) in.fail("incomplete format");
    const char conv = fmt[i];
    if (!arg) {
      if (next >= positional.size()) in.fail("not enough arguments for format string");
      arg = &positional[next++];
    }
    check_width(in, spec);
    switch (conv) {
      case 's':
      case 'r': {
        std::string text = conv == 's' ? to_str(*arg) : to_repr(*arg);
        if (escape_args && !(arg->is_string() && arg->markup)) text = html_escape(text);
        if (spec == "%") {
          out += text;
        } else {
          out += c_format(spec + "s", text.c_str());
        }
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg->is_number()) in.fail("%d format: a number is required");
        const long long v =
            arg->kind == Kind::kFloat
                ? static_cast<long long>(std::trunc(arg->number))
                : static_cast<long long>(arg->kind == Kind::kBool ? arg->boolean : arg->integer);
        out += c_format(spec + "ll" + (conv == 'i' ? 'd' : conv), v);
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg->is_number()) in.fail("%f format: a number is required");
        out += c_format(spec + conv, arg->as_double());
        break;
      }
      default:
        in.fail(std::string("unsupported format character '") + conv + "'");
    }
    in.check_size(out.size());
  }
  if (!mapping_like && next < positional.size())
    in.fail("not all arguments converted during string formatting");
  return out;
}

// str.format with {} / {0} / {name} fields (format specs other than empty are not supported).
std::string brace_format(Interpreter& in, const std::string& fmt, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = fmt.find('}', i);
      if (close == std::string::npos) in.fail("single '{' encountered in format string");
      const std::string field = fmt.substr(i + 1, close - i - 1);
      if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
        in.fail("format specs in str.format are not supported");
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_index >= args.positional.size())
          in.fail("Replacement index out of range for positional args");
        v = &args.positional[auto_index++];
      } else if (std::all_of(field.begin(), field.end(),
                             [](char d) { return d >= '0' && d <= '9'; })) {
        const size_t k = field.size() > 6 ? SIZE_MAX : std::stoul(field);
        if (k >= args.positional.size())
          in.fail("Replacement index out of range for positional args");
        v = &args.positional[k];
      } else {
        for (const auto& [key, value] : args.keyword)
          if (key == field) v = &value;
        if (!v) in.fail("format key '" + field + "' missing");
      }
      out += to_str(*v);
      i = close;
    } else if (c == '}') {
      in.fail("single '}' encountered in format string");
    } else {
      out += c;
    }
    in.check_size(out.size());
  }
  return out;
}

// ---- ordering -----------------------------------------------------------------------------------

int compare_values(Interpreter& in, const Value& a, const Value& b, int level = 0);

int compare_sequences(Interpreter& in, const List& a, const List& b, int level) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (values_equal(a[i], b[i])) continue;
    return compare_values(in, a[i], b[i], level + 1);
  }
  return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
}

// Python's < ordering: numbers, strings (by code point), and same-kind sequences.
int compare_values(Interpreter& in, const Value& a, const Value& b, int level) {
  if (level > static_cast<int>(kMaxValueDepth)) in.fail("values nested too deeply to compare");
  in.charge(1);
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::kFloat && b.kind != Kind::kFloat) {
      const int64_t x = a.kind == Kind::kBool ? a.boolean : a.integer;
      const int64_t y = b.kind == Kind::kBool ? b.boolean : b.integer;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    charge_bytes(std::min(a.text.size(), b.text.size()));
    return a.text.str().compare(b.text.str()) < 0 ? -1 : a.text.str() == b.text.str() ? 0 : 1;
  }
  if (a.is_sequence() && a.kind == b.kind) return compare_sequences(in, *a.list, *b.list, level);
  if (a.is_undefined()) in.fail(a.text.empty() ? "undefined value in comparison" : a.text.str());
  if (b.is_undefined()) in.fail(b.text.empty() ? "undefined value in comparison" : b.text.str());
  in.fail(std::string("'<' not supported between instances of '") + a.type_name() + "' and '" +
          b.type_name() + "'");
}

// Stable merge sort that stays memory-safe whatever the comparison answers.
template <class Less>
void merge_sort(List& items, Less less) {
  if (items.size() < 2) return;
  List buffer(items.size());
  for (size_t width = 1; width < items.size(); width *= 2) {
    for (size_t lo = 0; lo < items.size(); lo += 2 * width) {
      const size_t mid = std::min(lo + width, items.size());
      const size_t hi = std::min(lo + 2 * width, items.size());
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) buffer[k++] = less(items[j], items[i]) ? items[j++] : items[i++];
      while (i < mid) buffer[k++] = items[i++];
      while (j < hi) buffer[k++] = items[j++];
    }
    items.swap(buffer);
  }
}

Value lower_if_string(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::from_string(map_chars(v.text, to_lower));
  return v;
}

// Attribute paths as filters take them: "a.b", integers index lists.
Value attribute_path(Interpreter& in, const Value& obj, const Value& attribute) {
  if (attribute.kind == Kind::kInt) return get_item(in, obj, attribute);
  const std::string& path = need_string(in, attribute, "attribute");
  Value cur = obj;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() &&
        std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        part.size() < 10) {
      cur = get_item(in, cur, Value::from_int(std::stoll(part)));
    } else {
      cur = get_item(in, cur, Value::from_string(part));
    }
    if (dot == std::string::npos) return cur;
    if (cur.is_undefined()) return cur;
    start = dot + 1;
  }
}

template <class Op>
int64_t checked(Interpreter& in, Op op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op(a, b, &r)) in.fail("integer overflow");
  return r;
}
bool add_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

int64_t as_int(const Value& v) { return v.kind == Kind::kBool ? v.boolean : v.integer; }

[[noreturn]] void operand_error(Interpreter& in, const std::string& op, const Value& a,
                                const Value& b) {
  if (a.is_undefined()) in.fail(a.text.empty() ? "undefined value" : a.text.str());
  if (b.is_undefined()) in.fail(b.text.empty() ? "undefined value" : b.text.str());
  if (op == "+" && a.is_string())
    in.fail(std::string("can only concatenate str (not \"") + b.type_name() + "\") to str");
  in.fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
          b.type_name() + "'");
}

Value repeat(Interpreter& in, const Value& seq, int64_t times) {
  if (times <= 0)
    return seq.is_string()            ? Value::from_string("")
           : seq.kind == Kind::kTuple ? Value::new_tuple({})
                                      : Value::new_list({});
  if (seq.is_string()) {
    const auto total = static_cast<long double>(seq.text.size()) * static_cast<long double>(times);
    if (total > static_cast<long double>(in.limits().max_string_bytes)) in.check_size(SIZE_MAX);
    std::string out;
    out.reserve(static_cast<size_t>(total));
    for (int64_t i = 0; i < times; ++i) out += seq.text;
    in.charge(out.size() / 64);
    return Value::from_string(std::move(out));
  }
  const auto total = static_cast<long double>(seq.list->size()) * static_cast<long double>(times);
  if (total > 1e6) in.fail("sequence repetition longer than 1000000 items");
  in.charge(static_cast<uint64_t>(total));
  List out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return seq.kind == Kind::kTuple ? Value::new_tuple(std::move(out))
                                  : Value::new_list(std::move(out));
}

// ---- filters -----------------------------------------------------------------------------------

Value to_int_value(const Value& v, const Value& fallback, int64_t base) {
  switch (v.kind) {
    case Kind::kBool:
      return Value::from_int(v.boolean);
    case Kind::kInt:
      return v;
    case Kind::kFloat:
      if (!std::isfinite(v.number) || std::fabs(v.number) >= 9.2e18) return fallback;
      return Value::from_int(static_cast<int64_t>(std::trunc(v.number)));
    case Kind::kString: {
      std::string s = strip_chars(v.text, Value::none(), true, true);
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      if (s.empty()) return fallback;
      errno = 0;
      char* end = nullptr;
      const long long r = std::strtoll(s.c_str(), &end, static_cast<int>(base));
      if (errno == 0 && end && *end == '\0') return Value::from_int(r);
      // Jinja falls back to int(float(value)).
      errno = 0;
      const double d = std::strtod(s.c_str(), &end);
      if (errno == 0 && end && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18)
        return Value::from_int(static_cast<int64_t>(std::trunc(d)));
      return fallback;
    }
    default:
      return fallback;
  }
}

Value to_float_value(const Value& v, const Value& fallback) {
  switch (v.kind) {
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
      return Value::from_float(v.as_double());
    case Kind::kString: {
      const std::string s = strip_chars(v.text, Value::none(), true, true);
      if (s.empty()) return fallback;
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (end && *end == '\0') return Value::from_float(d);
      return fallback;
    }
    default:
      return fallback;
  }
}

Value round_value(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "round", args, {"precision", "method"});
  const int64_t precision = p.integer(0, 0);
  const std::string method = p.string(1, "common");
  if (!v.is_number()) in.fail("round expects a number");
  if (precision < -300 || precision > 300) in.fail("round precision out of range");
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  if (method == "common" && v.kind != Kind::kFloat && precision >= 0) {
    return Value::from_int(as_int(v));  // round(int) stays an int in Python
  }
  double r;
  if (method == "common") {
    r = std::nearbyint(x);  // Python's round(): half to even
  } else if (method == "ceil") {
    r = std::ceil(x);
  } else if (method == "floor") {
    r = std::floor(x);
  } else {
    in.fail("method must be common, ceil or floor");
  }
  return Value::from_float(r / scale);
}

Value indent(Interpreter& in, const Value& v, CallArgs& args) {
  if (!v.is_string()) {
    if (v.is_undefined()) in.fail(v.text.empty() ? "undefined value" : v.text.str());
    in.fail(std::string("unsupported operand type(s) for +=: '") + v.type_name() + "' and 'str'");
  }
  Params p(in, "indent", args, {"width", "first", "blank"});
  std::string unit;
  if (p.given(0) && p.get(0).is_string()) {
    unit = p.get(0).text;
  } else {
    const int64_t width = p.integer(0, 4);
    if (width > 10000) in.fail("indent width too large");
    unit.assign(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  const bool first = p.flag(1, false), blank = p.flag(2, false);
  std::u32string u = utf8_decode(to_str(v));
  u += U'\n';
  const std::vector<std::u32string> lines = split_lines(u);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += unit;
    }
    out += utf8_encode(lines[i]);
    in.check_size(out.size());
  }
  if (first) out = unit + out;
  return like(v, std::move(out));
}

Value tojson(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = p.flag(0, false);
  o.sort_keys = p.flag(3, false);
  if (p.given(1) && !p.get(1).is_none()) {
    o.has_indent = true;
    if (p.get(1).is_string()) {
      o.indent = p.get(1).text;
    } else {
      const int64_t n = p.integer(1, 0);
      if (n > 1000) in.fail("tojson indent too large");
      o.indent.assign(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    }
    o.item_separator = ",";
  }
  if (p.given(2) && !p.get(2).is_none()) {
    const Value& sep = p.get(2);
    if (!sep.is_sequence() || sep.list->size() != 2 || !(*sep.list)[0].is_string() ||
        !(*sep.list)[1].is_string())
      in.fail("tojson separators must be a pair of strings");
    o.item_separator = (*sep.list)[0].text;
    o.key_separator = (*sep.list)[1].text;
  }
  std::string out = to_json(v, o);
  in.charge(out.size() / 16);
  in.check_size(out.size());
  return Value::from_string(std::move(out));
}

// select/reject (by test) and selectattr/rejectattr (attribute, then test).
Value select_items(Interpreter& in, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  // Jinja yields nothing for a false-y sequence (None included) rather than failing.
  List items = v.truthy() ? iterate(in, v) : List{};
  in.charge(items.size());
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) in.fail("selectattr/rejectattr need an attribute");
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) test = need_string(in, args.positional[next++], "test name");
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next),
                              args.positional.end());
  test_args.keyword = args.keyword;
  List out;
  for (const Value& item : items) {
    const Value subject = by_attribute ? attribute_path(in, item, attribute) : item;
    CallArgs a = test_args;
    const bool passed = test.empty() ? subject.truthy() : run_test(in, test, subject, a);
    if (passed == keep) out.push_back(item);
  }
  return Value::new_generator(std::move(out));
}

Value map_items(Interpreter& in, const Value& v, CallArgs& args) {
  List items = v.truthy() ? iterate(in, v) : List{};
  in.charge(items.size());
  List out;
  const Value* attribute = nullptr;
  const Value* fallback = nullptr;
  for (const auto& [k, val] : args.keyword) {
    if (k == "attribute") attribute = &val;
    if (k == "default") fallback = &val;
  }
  if (attribute) {
    for (const Value& item : items) {
      Value r = attribute_path(in, item, *attribute);
      if (r.is_undefined() && fallback) r = *fallback;
      out.push_back(std::move(r));
    }
    return Value::new_generator(std::move(out));
  }
  if (args.positional.empty()) in.fail("map needs a filter name or attribute=");
  const std::string name = need_string(in, args.positional[0], "map");
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    CallArgs a = rest;
    out.push_back(run_filter(in, name, item, a));
  }
  return Value::new_generator(std::move(out));
}

Value sort_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "sort", args, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = p.flag(0, false), case_sensitive = p.flag(1, false);
  List items = iterate(in, v);
  in.charge(items.size() * 8);
  auto key = [&](const Value& item) {
    const Value k = p.given(2) ? attribute_path(in, item, p.get(2)) : item;
    return lower_if_string(k, case_sensitive);
  };
  merge_sort(items, [&](const Value& a, const Value& b) {
    const int c = compare_values(in, key(a), key(b));
    return reverse ? c > 0 : c < 0;
  });
  return Value::new_list(std::move(items));
}

Value unique_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "unique", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = p.flag(0, false);
  List items = iterate(in, v);
  in.charge(items.size() * items.size() / 16 + items.size());
  List out, seen;
  for (const Value& item : items) {
    const Value k =
        lower_if_string(p.given(1) ? attribute_path(in, item, p.get(1)) : item, case_sensitive);
    if (k.kind == Kind::kList || k.kind == Kind::kDict || k.kind == Kind::kNamespace)
      in.fail(std::string("unhashable type: '") + k.type_name() + "'");
    bool dup = false;
    for (const Value& s : seen) dup = dup || values_equal(s, k);
    if (!dup) {
      seen.push_back(k);
      out.push_back(item);
    }
  }
  return Value::new_generator(std::move(out));
}

Value min_max(Interpreter& in, const Value& v, CallArgs& args, bool want_max) {
  Params p(in, want_max ? "max" : "min", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = p.flag(0, false);
  const List items = iterate(in, v);
  in.charge(items.size());
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const Value a = lower_if_string(p.given(1) ? attribute_path(in, items[i], p.get(1)) : items[i],
                                    case_sensitive);
    const Value b = lower_if_string(
        p.given(1) ? attribute_path(in, items[best], p.get(1)) : items[best], case_sensitive);
    const int c = compare_values(in, a, b);
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}

Value join_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "join", args, {"d", "attribute"});
  const std::string sep = p.given(0) ? to_str(p.get(0)) : "";
  const List items = iterate(in, v);
  in.charge(items.size());
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += to_str(p.given(1) ? attribute_path(in, items[i], p.get(1)) : items[i]);
    in.check_size(out.size());
  }
  in.charge(out.size() / 64);
  return Value::from_string(std::move(out));
}

Value dict_items(Interpreter& in, const Value& v) {
  if (v.is_undefined()) return Value::new_list({});
  if (v.kind != Kind::kDict)
    in.fail(std::string("items expects a mapping, got '") + v.type_name() + "'");
  List out;
  for (const auto& [k, item] : v.dict->entries)
    out.push_back(Value::new_tuple({Value::from_string(k), item}));
  in.charge(out.size());
  return Value::new_list(std::move(out));
}

Value reverse_value(Interpreter& in, const Value& v) {
  if (v.is_string()) {
    std::u32string u = utf8_decode(v.text);
    std::reverse(u.begin(), u.end());
    return Value::from_string(utf8_encode(u));
  }
  // reversed() of a list is an iterator; a generator is first turned into a list.
  const bool was_generator = v.kind == Kind::kGenerator;
  List items = iterate(in, v);
  std::reverse(items.begin(), items.end());
  return was_generator ? Value::new_list(std::move(items)) : Value::new_generator(std::move(items));
}

Value sum_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params p(in, "sum", args, {"attribute", "start"});
  Value total = p.given(1) ? p.get(1) : Value::from_int(0);
  for (const Value& item : iterate(in, v)) {
    total = binary_op(in, "+", total, p.given(0) ? attribute_path(in, item, p.get(0)) : item);
  }
  return total;
}

int64_t word_count(const std::string& s) {
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(s)) {
    const bool w = is_word_char(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

}  // namespace

// ---- public builtins ----------------------------------------------------------------------------

List iterate(Interpreter& in, const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return {};
    case Kind::kList:
    case Kind::kTuple:
      in.charge(v.list->size());  // the copy, whatever the caller does with it
      return *v.list;
    case Kind::kGenerator: {
      // A generator yields its items once, as in Python.
      List items = std::move(*v.list);
      v.list->clear();
      return items;
    }
    case Kind::kDict: {
      List keys;
      for (const auto& [k, item] : v.dict->entries) keys.push_back(Value::from_string(k));
      return keys;
    }
    case Kind::kString: {
      List chars;
      for (char32_t c : utf8_decode(v.text)) {
        std::string s;
        append_utf8(s, c);
        chars.push_back(Value::from_string(std::move(s)));
      }
      in.charge(chars.size());
      return chars;
    }
    default:
      in.fail(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

int64_t length_of(Interpreter& in, const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return 0;
    case Kind::kString:
      return static_cast<int64_t>(utf8_length(v.text));
    case Kind::kList:
    case Kind::kTuple:
      return static_cast<int64_t>(v.list->size());
    case Kind::kDict:
      return static_cast<int64_t>(v.dict->entries.size());
    default:
      in.fail(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

namespace {

bool is_method_name(const Value& obj, const std::string& name) {
  static const char* const kDict[] = {"items",      "keys",   "values",  "get",
                                      "copy",       "update", "pop",     "popitem",
                                      "setdefault", "clear",  "fromkeys"};
  static const char* const kString[] = {
      "startswith", "endswith", "split",   "rsplit",  "strip",      "lstrip",     "rstrip",
      "replace",    "upper",    "lower",   "title",   "capitalize", "find",       "rfind",
      "index",      "rindex",   "count",   "format",  "join",       "splitlines", "isdigit",
      "isalpha",    "isalnum",  "isspace", "islower", "isupper"};
  static const char* const kList[] = {"append", "extend",  "insert", "pop",   "remove", "clear",
                                      "sort",   "reverse", "index",  "count", "copy"};
  auto in_set = [&](const auto& names) {
    for (const char* n : names)
      if (name == n) return true;
    return false;
  };
  if (obj.kind == Kind::kDict) return in_set(kDict);
  if (obj.is_string()) return in_set(kString);
  if (obj.is_sequence()) return in_set(kList);
  return false;
}

}  // namespace

Value get_attr(Interpreter& in, const Value& obj, const std::string& name) {
  // Jinja's `obj.name` prefers Python attributes: `message.items` is the dict method, not a key.
  if (is_method_name(obj, name)) {
    return Value::function(name, [obj, name](CallArgs& args, Interpreter& interp) {
      Value result;
      if (!run_method(interp, obj, name, args, &result))
        interp.fail(std::string("'") + obj.type_name() + "' object has no method '" + name + "'");
      return result;
    });
  }
  switch (obj.kind) {
    case Kind::kUndefined:
      in.fail(obj.text.empty() ? "undefined value has no attribute '" + name + "'"
                               : obj.text.str());
    case Kind::kDict:
    case Kind::kNamespace:
      if (const Value* v = obj.dict->find(name)) return *v;
      return Value::undefined(std::string("'") +
                              (obj.kind == Kind::kDict ? "dict object" : "Namespace") +
                              "' has no attribute '" + name + "'");
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
      // Python numbers' .real and .imag.
      if (name == "real") return obj.kind == Kind::kFloat ? obj : Value::from_int(as_int(obj));
      if (name == "imag")
        return obj.kind == Kind::kFloat ? Value::from_float(0) : Value::from_int(0);
      [[fallthrough]];
    default:
      return Value::undefined(std::string("'") + (obj.is_none() ? "None" : obj.type_name()) +
                              "' has no attribute '" + name + "'");
  }
}

Value get_item(Interpreter& in, const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Kind::kUndefined:
      in.fail(obj.text.empty() ? "undefined value is not subscriptable" : obj.text.str());
    case Kind::kDict:
    case Kind::kNamespace:
      if (key.is_string()) {
        if (const Value* v = obj.dict->find(key.text)) return *v;
        return Value::undefined("'dict object' has no attribute '" + key.text + "'");
      }
      return Value::undefined("'dict object' has no attribute '" + to_str(key) + "'");
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kString: {
      if (key.kind != Kind::kInt && key.kind != Kind::kBool) {
        return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" +
                                to_str(key) + "'");
      }
      int64_t i = as_int(key);
      if (obj.is_string()) {
        // Walks to the character rather than decoding the whole string.
        const std::string& s = obj.text;
        if (i < 0) i += static_cast<int64_t>(utf8_length(s));
        if (i < 0) return Value::undefined("string index out of range");
        const size_t begin = utf8_offset(s, static_cast<size_t>(i));
        if (begin >= s.size()) return Value::undefined("string index out of range");
        const size_t end = begin + utf8_offset(std::string_view(s).substr(begin), 1);
        return Value::from_string(s.substr(begin, end - begin));
      }
      const auto n = static_cast<int64_t>(obj.list->size());
      if (i < 0) i += n;
      if (i < 0 || i >= n)
        return Value::undefined(std::string(obj.type_name()) + " index out of range");
      return (*obj.list)[static_cast<size_t>(i)];
    }
    default:
      return Value::undefined(std::string("'") + (obj.is_none() ? "None" : obj.type_name()) +
                              "' has no attribute '" + to_str(key) + "'");
  }
}

Value slice(Interpreter& in, const Value& obj, const Value& start_v, const Value& stop_v,
            const Value& step_v) {
  auto bound = [&](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (v.kind != Kind::kInt && v.kind != Kind::kBool)
      in.fail(std::string("slice ") + what + " must be an integer or None");
    return as_int(v);
  };
  const std::optional<int64_t> start_o = bound(start_v, "start"), stop_o = bound(stop_v, "stop"),
                               step_o = bound(step_v, "step");
  const int64_t step = step_o.value_or(1);
  if (step == 0) in.fail("slice step cannot be zero");
  if (step == INT64_MIN) in.fail("slice step out of range");
  int64_t n;
  if (obj.is_string()) {
    n = static_cast<int64_t>(utf8_length(obj.text));
  } else if (obj.is_sequence()) {
    n = static_cast<int64_t>(obj.list->size());
  } else {
    if (obj.is_undefined())
      in.fail(obj.text.empty() ? "undefined value is not subscriptable" : obj.text.str());
    // Jinja compiles slices to plain Python subscription: other objects raise TypeError.
    in.fail(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) {
      x = x < -n ? (step > 0 ? 0 : -1) : x + n;
    } else if (x >= n) {
      x = step > 0 ? n : n - 1;
    }
    return x;
  };
  const int64_t start = clamp(start_o, step > 0 ? 0 : n - 1);
  const int64_t stop = clamp(stop_o, step > 0 ? n : -1);
  if (obj.is_string() && step == 1) {
    // The common s[a:b]: a byte range, found without decoding the string.
    if (stop <= start) return Value::from_string("");
    const std::string_view s = obj.text;
    const size_t begin = utf8_offset(s, static_cast<size_t>(start));
    const size_t end = begin + utf8_offset(s.substr(begin), static_cast<size_t>(stop - start));
    return Value::from_string(std::string(s.substr(begin, end - begin)));
  }
  std::vector<size_t> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    picked.push_back(static_cast<size_t>(i));
    if (step > 0 ? i > INT64_MAX - step : i < INT64_MIN - step) break;
  }
  in.charge(picked.size());
  if (obj.is_string()) {
    const std::u32string text = utf8_decode(obj.text);
    std::u32string out;
    for (size_t i : picked) out += text[i];
    return Value::from_string(utf8_encode(out));
  }
  List out;
  for (size_t i : picked) out.push_back((*obj.list)[i]);
  return obj.kind == Kind::kTuple ? Value::new_tuple(std::move(out))
                                  : Value::new_list(std::move(out));
}

Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    if (a.is_string() && b.is_string()) in.check_size(a.text.size() + b.text.size());
    std::string s = to_str(a) + to_str(b);
    in.check_size(s.size());
    in.charge(s.size() / 64);
    return Value::from_string(std::move(s));
  }
  const bool ints =
      a.is_number() && b.is_number() && a.kind != Kind::kFloat && b.kind != Kind::kFloat;
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) return Value::from_int(checked(in, add_overflow, as_int(a), as_int(b)));
    if (nums) return Value::from_float(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      in.check_size(a.text.size() + b.text.size());
      in.charge((a.text.size() + b.text.size()) / 64);
      if (a.markup || b.markup) return markup_string(escaped_text(a) + escaped_text(b));
      return Value::from_string(a.text.str() + b.text.str());
    }
    if (a.is_sequence() && a.kind == b.kind) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      in.charge(out.size());
      return a.kind == Kind::kTuple ? Value::new_tuple(std::move(out))
                                    : Value::new_list(std::move(out));
    }
    operand_error(in, op, a, b);
  }
  if (op == "-") {
    if (ints) return Value::from_int(checked(in, sub_overflow, as_int(a), as_int(b)));
    if (nums) return Value::from_float(a.as_double() - b.as_double());
    operand_error(in, op, a, b);
  }
  if (op == "*") {
    if (ints) return Value::from_int(checked(in, mul_overflow, as_int(a), as_int(b)));
    if (nums) return Value::from_float(a.as_double() * b.as_double());
    const bool a_seq = a.is_string() || a.is_sequence(), b_seq = b.is_string() || b.is_sequence();
    if (a_seq && (b.kind == Kind::kInt || b.kind == Kind::kBool)) return repeat(in, a, as_int(b));
    if (b_seq && (a.kind == Kind::kInt || a.kind == Kind::kBool)) return repeat(in, b, as_int(a));
    operand_error(in, op, a, b);
  }
  if (op == "/") {
    if (!nums) operand_error(in, op, a, b);
    if (b.as_double() == 0) in.fail("division by zero");
    return Value::from_float(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return like(a, percent_format(in, a.text, b, a.markup));
    if (!nums) operand_error(in, op, a, b);
    if (b.as_double() == 0)
      in.fail(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
    if (ints) {
      const int64_t x = as_int(a), y = as_int(b);
      if (x == INT64_MIN && y == -1) in.fail("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::from_int(op == "//" ? q : m);
    }
    // CPython's float_divmod.
    const double x = a.as_double(), y = b.as_double();
    double m = std::fmod(x, y);
    double div = (x - m) / y;
    if (m != 0) {
      if ((y < 0) != (m < 0)) {
        m += y;
        div -= 1.0;
      }
    } else {
      m = std::copysign(0.0, y);
    }
    if (op == "%") return Value::from_float(m);
    double floor_div = 0;
    if (div != 0) {
      floor_div = std::floor(div);
      if (div - floor_div > 0.5) floor_div += 1.0;
    } else {
      floor_div = std::copysign(0.0, x / y);
    }
    return Value::from_float(floor_div);
  }
  if (op == "**") {
    if (!nums) operand_error(in, op, a, b);
    if (ints && as_int(b) >= 0) {
      int64_t base = as_int(a), e = as_int(b), result = 1;
      while (e > 0) {
        if (e & 1) result = checked(in, mul_overflow, result, base);
        e >>= 1;
        if (e > 0) base = checked(in, mul_overflow, base, base);
      }
      return Value::from_int(result);
    }
    if (a.as_double() == 0 && b.as_double() < 0)
      in.fail("0.0 cannot be raised to a negative power");
    const double x = a.as_double(), y = b.as_double();
    if (x < 0 && std::isfinite(y) && y != std::floor(y))
      in.fail("negative number cannot be raised to a fractional power (complex result)");
    const double r = std::pow(x, y);
    if (std::isinf(r) && std::isfinite(x) && std::isfinite(y))
      in.fail("(34, 'Numerical result out of range')");
    return Value::from_float(r);
  }
  in.fail("unknown operator " + op);
}

bool compare_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return values_equal(a, b);
  if (op == "!=") return !values_equal(a, b);
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) {
        if (a.is_undefined()) in.fail(a.text.empty() ? "undefined value" : a.text.str());
        in.fail(std::string("'in <string>' requires string as left operand, not ") + a.type_name());
      }
      found = find_text(b.text, a.text) != std::string::npos;
    } else if (b.is_sequence() || b.kind == Kind::kGenerator) {
      in.charge(b.list->size());
      for (const Value& item : iterate(in, b)) {
        if (values_equal(a, item)) {
          found = true;
          break;
        }
      }
    } else if (b.kind == Kind::kDict) {
      if (a.kind == Kind::kList || a.kind == Kind::kDict)
        in.fail(std::string("unhashable type: '") + a.type_name() + "'");
      found = a.is_string() && b.dict->find(a.text) != nullptr;
    } else if (!b.is_undefined()) {
      in.fail(std::string("argument of type '") + b.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  const int c = compare_values(in, a, b);
  if (op == "<") return c < 0;
  if (op == ">") return c > 0;
  if (op == "<=") return c <= 0;
  if (op == ">=") return c >= 0;
  in.fail("unknown comparison " + op);
}

bool has_test(const std::string& name) {
  static const char* const kTests[] = {
      "defined",     "undefined", "none",        "string",  "number",   "integer",  "float",
      "boolean",     "true",      "false",       "mapping", "iterable", "sequence", "callable",
      "odd",         "even",      "divisibleby", "eq",      "equalto",  "==",       "ne",
      "!=",          "lt",        "lessthan",    "<",       "le",       "<=",       "gt",
      "greaterthan", ">",         "ge",          ">=",      "in",       "lower",    "upper",
      "sameas",      "escaped",   "filter",      "test"};
  for (const char* t : kTests)
    if (name == t) return true;
  return false;
}

bool run_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args) {
  auto arg = [&](size_t i) -> const Value& {
    if (i < args.positional.size()) return args.positional[i];
    if (i == 0 && !args.keyword.empty()) return args.keyword[0].second;
    in.fail("test '" + name + "' needs an argument");
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind == Kind::kInt;
  if (name == "float") return v.kind == Kind::kFloat;
  if (name == "boolean") return v.kind == Kind::kBool;
  if (name == "true") return v.kind == Kind::kBool && v.boolean;
  if (name == "false") return v.kind == Kind::kBool && !v.boolean;
  if (name == "mapping") return v.kind == Kind::kDict;
  if (name == "iterable")
    return v.is_string() || v.is_sequence() || v.kind == Kind::kDict ||
           v.kind == Kind::kGenerator || v.is_undefined();
  if (name == "sequence")
    return v.is_string() || v.is_sequence() || v.kind == Kind::kDict || v.is_undefined();
  if (name == "callable") return v.kind == Kind::kCallable;
  if (name == "escaped") return false;
  if (name == "odd" || name == "even") {
    const Value rem = binary_op(in, "%", v, Value::from_int(2));  // Jinja: value % 2
    return values_equal(rem, Value::from_int(name == "odd" ? 1 : 0));
  }
  if (name == "divisibleby") {
    const Value& d = arg(0);
    if (!v.is_number() || !d.is_number()) in.fail("divisibleby expects numbers");
    if (d.as_double() == 0) in.fail("division by zero");
    return values_equal(binary_op(in, "%", v, d), Value::from_int(0));
  }
  if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, arg(0));
  if (name == "ne" || name == "!=") return !values_equal(v, arg(0));
  if (name == "lt" || name == "lessthan" || name == "<") return compare_op(in, "<", v, arg(0));
  if (name == "le" || name == "<=") return compare_op(in, "<=", v, arg(0));
  if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(in, ">", v, arg(0));
  if (name == "ge" || name == ">=") return compare_op(in, ">=", v, arg(0));
  if (name == "in") return compare_op(in, "in", v, arg(0));
  if (name == "lower" || name == "upper") {
    // str(value).islower() / .isupper(): some cased character, none of the other case.
    bool cased = false, other = false;
    for (char32_t c : utf8_decode(to_str(v))) {
      const bool is_lower = to_upper(c) != c, is_upper = to_lower(c) != c;
      cased = cased || is_lower || is_upper;
      other = other || (name == "lower" ? is_upper : is_lower);
    }
    return cased && !other;
  }
  if (name == "sameas") {
    const Value& o = arg(0);
    if (v.kind != o.kind) return false;
    switch (v.kind) {
      case Kind::kNone:
      case Kind::kUndefined:
        return true;
      case Kind::kBool:
        return v.boolean == o.boolean;
      case Kind::kInt:
        return v.integer == o.integer && v.integer >= -5 && v.integer <= 256;
      case Kind::kList:
      case Kind::kTuple:
        return v.list == o.list;
      case Kind::kDict:
      case Kind::kNamespace:
        return v.dict == o.dict;
      case Kind::kCallable:
        return v.callable == o.callable;
      default:
        return false;
    }
  }
  if (name == "filter" || name == "test") {
    const std::string& n = need_string(in, arg(0), name.c_str());
    return name == "test" ? has_test(n) : true;
  }
  in.fail("no test named '" + name + "'");
}

Value run_filter(Interpreter& in, const std::string& name, Value v, CallArgs& args) {
  auto no_args = [&] {
    if (!args.positional.empty() || !args.keyword.empty())
      in.fail("filter '" + name + "' takes no arguments");
  };
  if (name == "safe") {
    no_args();
    return v.is_string() ? markup_string(v.text) : markup_string(to_str(v));
  }
  if (name == "string") {
    no_args();
    return v.is_string() ? v : Value::from_string(to_str(v));
  }
  if (name == "trim") {
    Params p(in, "trim", args, {"chars"});
    return Value::from_string(
        strip_chars(to_str(v), p.given(0) ? p.get(0) : Value::none(), true, true));
  }
  if (name == "tojson") return tojson(in, v, args);
  if (name == "length" || name == "count") {
    no_args();
    return Value::from_int(length_of(in, v));
  }
  if (name == "upper" || name == "lower") {
    no_args();
    return like(v, map_chars(to_str(v), name == "upper" ? to_upper : to_lower));
  }
  if (name == "title") {
    no_args();
    return Value::from_string(jinja_title(to_str(v)));
  }
  if (name == "capitalize") {
    no_args();
    return like(v, capitalize(to_str(v)));
  }
  if (name == "default" || name == "d") {
    Params p(in, "default", args, {"default_value", "boolean"});
    const Value fallback = p.given(0) ? p.get(0) : Value::from_string("");
    const bool boolean = p.flag(1, false);
    if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
    return v;
  }
  if (name == "items") {
    no_args();
    return Value::new_generator(std::move(*dict_items(in, v).list));
  }
  if (name == "list") {
    no_args();
    List items = iterate(in, v);
    in.charge(items.size());
    return Value::new_list(std::move(items));
  }
  if (name == "first" || name == "last") {
    no_args();
    if (v.is_string()) {
      const std::u32string u = utf8_decode(v.text);
      if (u.empty()) return Value::undefined("No first item, sequence was empty.");
      std::string s;
      append_utf8(s, name == "first" ? u.front() : u.back());
      return Value::from_string(std::move(s));
    }
    if (name == "last" && v.kind == Kind::kGenerator)
      in.fail("'generator' object is not reversible");
    const List items = iterate(in, v);
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") return join_items(in, v, args);
  if (name == "map") return map_items(in, v, args);
  if (name == "select" || name == "reject")
    return select_items(in, v, args, false, name == "select");
  if (name == "selectattr" || name == "rejectattr")
    return select_items(in, v, args, true, name == "selectattr");
  if (name == "reverse") {
    no_args();
    return reverse_value(in, v);
  }
  if (name == "sort") return sort_items(in, v, args);
  if (name == "unique") return unique_items(in, v, args);
  if (name == "min" || name == "max") return min_max(in, v, args, name == "max");
  if (name == "sum") return sum_items(in, v, args);
  if ((name == "int" || name == "float") && v.is_undefined())
    in.fail(v.text.empty() ? "undefined value" : v.text.str());
  if (name == "int") {
    Params p(in, "int", args, {"default", "base"});
    const int64_t base = p.integer(1, 10);
    if (base < 2 || base > 36) in.fail("int base must be between 2 and 36");
    return to_int_value(v, p.given(0) ? p.get(0) : Value::from_int(0), base);
  }
  if (name == "float") {
    Params p(in, "float", args, {"default"});
    return to_float_value(v, p.given(0) ? p.get(0) : Value::from_float(0));
  }
  if (name == "abs") {
    no_args();
    if (v.kind == Kind::kFloat) return Value::from_float(std::fabs(v.number));
    if (v.kind == Kind::kInt || v.kind == Kind::kBool) {
      if (as_int(v) == INT64_MIN) in.fail("integer overflow");
      return Value::from_int(std::llabs(as_int(v)));
    }
    in.fail(std::string("bad operand type for abs(): '") + v.type_name() + "'");
  }
  if (name == "round") return round_value(in, v, args);
  if (name == "replace") {
    Params p(in, "replace", args, {"old", "new", "count"});
    const std::string s = to_str(v);
    return Value::from_string(
        py_replace(in, s, to_str(p.get(0)), to_str(p.get(1)), p.given(2) ? p.integer(2, -1) : -1));
  }
  if (name == "e" || name == "escape" || name == "forceescape") {
    no_args();
    return markup_string(name == "forceescape" ? html_escape(to_str(v)) : escaped_text(v));
  }
  if (name == "indent") return indent(in, v, args);
  if (name == "wordcount") {
    no_args();
    return Value::from_int(word_count(to_str(v)));
  }
  if (name == "format") {
    if (!args.keyword.empty()) {
      Value d = Value::new_dict();
      for (const auto& [k, val] : args.keyword) d.dict->set(k, val);
      update_depth(d);
      return like(v, percent_format(in, to_str(v), d, v.is_string() && v.markup));
    }
    return like(v, percent_format(in, to_str(v), Value::new_tuple(args.positional),
                                  v.is_string() && v.markup));
  }
  if (name == "dictsort") {
    Params p(in, "dictsort", args, {"case_sensitive", "by", "reverse"});
    const bool case_sensitive = p.flag(0, false), reverse = p.flag(2, false);
    const bool by_value = p.string(1, "key") == "value";
    List items = *dict_items(in, v).list;
    merge_sort(items, [&](const Value& a, const Value& b) {
      const size_t k = by_value ? 1 : 0;
      const int c = compare_values(in, lower_if_string((*a.list)[k], case_sensitive),
                                   lower_if_string((*b.list)[k], case_sensitive));
      return reverse ? c > 0 : c < 0;
    });
    return Value::new_list(std::move(items));
  }
  if (name == "attr") {
    Params p(in, "attr", args, {"name"});
    return get_attr(in, v, need_string(in, p.get(0), "attr"));
  }
  if (name == "batch") {
    Params p(in, "batch", args, {"linecount", "fill_with"});
    const int64_t size = p.integer(0, 1);
    if (size <= 0) in.fail("batch size must be positive");
    List out, cur;
    for (const Value& item : iterate(in, v)) {
      cur.push_back(item);
      if (static_cast<int64_t>(cur.size()) == size) {
        out.push_back(Value::new_list(std::move(cur)));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (p.given(1)) {
        // The fill is paid for before it is made: a huge linecount must not allocate first.
        const uint64_t fill = std::min<uint64_t>(static_cast<uint64_t>(size) - cur.size(),
                                                 UINT64_MAX / sizeof(Value));
        charge_allocation(fill * sizeof(Value));
        while (static_cast<int64_t>(cur.size()) < size) cur.push_back(p.get(1));
      }
      out.push_back(Value::new_list(std::move(cur)));
    }
    return Value::new_generator(std::move(out));
  }
  in.fail("no filter named '" + name + "'");
}

bool run_method(Interpreter& in, const Value& obj, const std::string& name, CallArgs& args,
                Value* result) {
  if (obj.is_string()) {
    const std::string& s = obj.text;
    in.charge(1 + s.size() / 64);
    if (name == "startswith" || name == "endswith") {
      Params p(in, name.c_str(), args, {"prefix"});
      List options = p.get(0).kind == Kind::kTuple ? *p.get(0).list : List{p.get(0)};
      bool hit = false;
      for (const Value& o : options) {
        const std::string& x = need_string(in, o, name.c_str());
        charge_bytes(x.size());
        hit = hit || (name == "startswith" ? s.compare(0, x.size(), x) == 0
                                           : s.size() >= x.size() &&
                                                 s.compare(s.size() - x.size(), x.size(), x) == 0);
      }
      *result = Value::from_bool(hit);
      return true;
    }
    if (name == "split" || name == "rsplit") {
      Params p(in, name.c_str(), args, {"sep", "maxsplit"});
      const Value sep = p.given(0) ? p.get(0) : Value::none();
      if (!sep.is_none()) {
        need_string(in, sep, name.c_str());
        if (sep.text.empty()) in.fail("empty separator");
      }
      *result = Value::new_list(py_split(s, sep, p.integer(1, -1), name == "rsplit"));
      return true;
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      Params p(in, name.c_str(), args, {"chars"});
      const Value chars = p.given(0) ? p.get(0) : Value::none();
      if (!chars.is_none()) need_string(in, chars, name.c_str());
      *result = like(obj, strip_chars(s, chars, name != "rstrip", name != "lstrip"));
      return true;
    }
    if (name == "replace") {
      Params p(in, "replace", args, {"old", "new", "count"});
      // Markup.replace escapes its plain-string arguments.
      auto arg = [&](size_t k) {
        const std::string& a = need_string(in, p.get(k), "replace");
        return obj.markup && !p.get(k).markup ? html_escape(a) : a;
      };
      *result = like(obj, py_replace(in, s, arg(0), arg(1), p.integer(2, -1)));
      return true;
    }
    if (name == "upper" || name == "lower") {
      Params p(in, name.c_str(), args, {});
      *result = like(obj, map_chars(s, name == "upper" ? to_upper : to_lower));
      return true;
    }
    if (name == "title" || name == "capitalize") {
      Params p(in, name.c_str(), args, {});
      *result = like(obj, name == "title" ? py_title_method(s) : capitalize(s));
      return true;
    }
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex" ||
        name == "count") {
      Params p(in, name.c_str(), args, {"sub"});
      const std::u32string hay = utf8_decode(s),
                           needle = utf8_decode(need_string(in, p.get(0), name.c_str()));
      if (name == "count") {
        int64_t n = 0;
        if (needle.empty()) {
          n = static_cast<int64_t>(hay.size()) + 1;
        } else {
          for (size_t pos = find_text(hay, needle); pos != std::u32string::npos;
               pos = find_text(hay, needle, pos + needle.size()))
            ++n;
        }
        *result = Value::from_int(n);
        return true;
      }
      const size_t pos = name[0] == 'r' ? rfind_text(hay, needle) : find_text(hay, needle);
      if (pos == std::u32string::npos && (name == "index" || name == "rindex"))
        in.fail("substring not found");
      *result = Value::from_int(pos == std::u32string::npos ? -1 : static_cast<int64_t>(pos));
      return true;
    }
    if (name == "format") {
      *result = Value::from_string(brace_format(in, s, args));
      return true;
    }
    if (name == "join") {
      Params p(in, "join", args, {"iterable"});
      std::string out;
      const List items = iterate(in, p.get(0));
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += s;
        out += need_string(in, items[i], "join");
        in.check_size(out.size());
      }
      *result = Value::from_string(std::move(out));
      return true;
    }
    if (name == "splitlines") {
      Params p(in, name.c_str(), args, {});
      List out;
      for (const auto& line : split_lines(utf8_decode(s)))
        out.push_back(Value::from_string(utf8_encode(line)));
      *result = Value::new_list(std::move(out));
      return true;
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
        name == "islower" || name == "isupper") {
      Params p(in, name.c_str(), args, {});
      const std::u32string u = utf8_decode(s);
      bool r = !u.empty();
      bool cased = false;
      for (char32_t c : u) {
        if (name == "isdigit") r = r && is_digit(c);
        if (name == "isalpha") r = r && is_alpha(c);
        if (name == "isalnum") r = r && (is_alpha(c) || is_digit(c));
        if (name == "isspace") r = r && py_isspace(c);
        const bool is_lower = to_upper(c) != c, is_upper = to_lower(c) != c;
        if (name == "islower" && is_upper) r = false;
        if (name == "isupper" && is_lower) r = false;
        cased = cased || is_lower || is_upper;
      }
      if (name == "islower" || name == "isupper") r = cased && r;
      *result = Value::from_bool(r);
      return true;
    }
    return false;
  }
  if (obj.kind == Kind::kDict) {
    in.charge(1 + obj.dict->entries.size());
    if (name == "items") {
      Params p(in, "items", args, {});
      *result = dict_items(in, obj);
      return true;
    }
    if (name == "keys" || name == "values") {
      Params p(in, name.c_str(), args, {});
      List out;
      for (const auto& [k, v] : obj.dict->entries)
        out.push_back(name == "keys" ? Value::from_string(k) : v);
      *result = Value::new_list(std::move(out));
      return true;
    }
    if (name == "get") {
      Params p(in, "get", args, {"key", "default"});
      const Value* found = p.get(0).is_string() ? obj.dict->find(p.get(0).text) : nullptr;
      *result = found ? *found : (p.given(1) ? p.get(1) : Value::none());
      return true;
    }
    if (name == "copy") {
      Params p(in, "copy", args, {});
      Value d = Value::new_dict();
      d.dict->entries = obj.dict->entries;
      update_depth(d);
      *result = d;
      return true;
    }
    if (name == "update" || name == "pop" || name == "popitem" || name == "setdefault" ||
        name == "clear") {
      in.fail("access to attribute '" + name + "' of 'dict' object is unsafe.");
    }
    if (obj.dict->find(name)) return false;
    return false;
  }
  if (obj.is_sequence()) {
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
        name == "remove" || name == "clear" || name == "sort" || name == "reverse") {
      // transformers renders in Jinja's ImmutableSandboxedEnvironment, which refuses these.
      in.fail("access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.");
    }
    if (name == "index" || name == "count") {
      Params p(in, name.c_str(), args, {"value"});
      in.charge(obj.list->size());
      int64_t n = 0, first = -1;
      for (size_t i = 0; i < obj.list->size(); ++i) {
        if (values_equal((*obj.list)[i], p.get(0))) {
          if (first < 0) first = static_cast<int64_t>(i);
          ++n;
        }
      }
      if (name == "index" && first < 0) in.fail("value is not in list");
      *result = Value::from_int(name == "index" ? first : n);
      return true;
    }
    return false;
  }
  return false;
}

}  // namespace af::tok::jinja
