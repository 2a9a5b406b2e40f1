#include "runtime/json_matcher.hpp"

#include <algorithm>

namespace af::runtime {
namespace {

using Frame = JsonMatcher::Frame;

constexpr size_t kMaxStacks = 64;       // ways of reading the text kept at once (anyOf)
constexpr uint32_t kMaxIntDigits = 16;  // number: integer part
constexpr uint32_t kMaxFracDigits = 16;
constexpr uint32_t kMaxExpDigits = 2;       // 1e99 is still a finite double
constexpr uint32_t kMaxIntegerDigits = 18;  // integer: stays within int64

enum DocState : uint8_t { kDocBefore, kDocAfter };
enum ObjState : uint8_t {
  kObjOpen,
  kObjKeyOrClose,
  kObjKey,
  kObjKeyBody,
  kObjColon,
  kObjValue,
  kObjAfter
};
enum ArrState : uint8_t { kArrOpen, kArrFirst, kArrValue, kArrAfter };
enum StrState : uint8_t { kStrOpen, kStrBody };
enum NumState : uint8_t {
  kNumStart,
  kNumMinus,
  kNumZero,
  kNumInt,
  kNumDot,
  kNumFrac,
  kNumE,
  kNumESign,
  kNumExp
};
enum IntState : uint8_t { kIntStart, kIntMinus, kIntZero, kIntDigits };

bool is_space(uint8_t b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }

// One byte of a JSON string body (after the opening quote): escapes and UTF-8 (RFC 3629,
// no overlongs or surrogates) are checked; characters are counted at their last byte.
enum class Scan { kReject, kPart, kChar, kQuote };
Scan scan_byte(Frame& f, uint8_t b) {
  if (f.utf8_left > 0) {
    if (b < f.utf8_lo || b > f.utf8_hi) return Scan::kReject;
    f.utf8_lo = 0x80;
    f.utf8_hi = 0xBF;
    return --f.utf8_left == 0 ? Scan::kChar : Scan::kPart;
  }
  if (f.esc == 1) {
    if (b == 'u') {
      f.esc = 5;
      return Scan::kPart;
    }
    f.esc = 0;
    const bool simple = b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' ||
                        b == 'r' || b == 't';
    return simple ? Scan::kChar : Scan::kReject;
  }
  if (f.esc >= 2) {
    if (!is_hex(b)) return Scan::kReject;
    // No escapes of surrogates (U+D800..U+DFFF): a pair would count as two characters here and as
    // one in the parsed string, so such characters are written as UTF-8 instead.
    if (f.esc == 5) f.negative = b == 'd' || b == 'D';
    if (f.esc == 4 && f.negative && !(b >= '0' && b <= '7')) return Scan::kReject;
    if (--f.esc == 1) {
      f.esc = 0;
      return Scan::kChar;
    }
    return Scan::kPart;
  }
  if (b == '"') return Scan::kQuote;
  if (b == '\\') {
    f.esc = 1;
    return Scan::kPart;
  }
  if (b < 0x20) return Scan::kReject;
  if (b < 0x80) return Scan::kChar;
  if (b >= 0xC2 && b <= 0xDF) {
    f.utf8_left = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    f.utf8_left = 2;
    if (b == 0xE0) f.utf8_lo = 0xA0;
    if (b == 0xED) f.utf8_hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    f.utf8_left = 3;
    if (b == 0xF0) f.utf8_lo = 0x90;
    if (b == 0xF4) f.utf8_hi = 0x8F;
  } else {
    return Scan::kReject;
  }
  return Scan::kPart;
}

const char* format_template(StringFormat f) {
  switch (f) {
    case StringFormat::kDate:
      return "YYYY-MM-DD";
    case StringFormat::kTime:
      return "hh:mm:ssZ";
    case StringFormat::kDateTime:
      return "YYYY-MM-DDThh:mm:ssZ";
    case StringFormat::kUuid:
      return "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    case StringFormat::kNone:
      break;
  }
  return "";
}

int days_in_month(uint64_t year, uint64_t month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2) {
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return leap ? 29 : 28;
  }
  return kDays[(month - 1) % 12];
}

// Whether byte b may come at position pos of format template t; `digits` holds the template's
// digits so far as a decimal number (YYYYMMDDhhmmss), so that months, days (by month and leap
// year), hours, minutes and seconds stay in range and Python's fromisoformat accepts the text.
bool format_accepts(const char* t, uint32_t pos, uint64_t digits, uint8_t b) {
  const char c = t[pos];
  const bool first = pos == 0 || t[pos - 1] != c;
  const int d = b - '0';
  switch (c) {
    case 'x':
      return is_hex(b);
    case 'Y':
      return is_digit(b) && (!first || d >= 1);
    case 'M':
      if (!is_digit(b)) return false;
      if (first) return d <= 1;
      return digits % 10 == 0 ? d >= 1 : d <= 2;
    case 'D': {
      if (!is_digit(b)) return false;
      if (first) return d <= days_in_month(digits / 100, digits % 100) / 10;
      const uint64_t month = (digits / 10) % 100, year = digits / 1000;
      const int day = static_cast<int>(digits % 10) * 10 + d;
      return day >= 1 && day <= days_in_month(year, month);
    }
    case 'h':
      if (!is_digit(b)) return false;
      if (first) return d <= 2;
      return digits % 10 < 2 || d <= 3;
    case 'm':
    case 's':
      return is_digit(b) && (!first || d <= 5);
    default:
      return b == static_cast<uint8_t>(c);
  }
}

// Whether a signed integer starting with `digits` digits of magnitude `mag` can still end
// inside [lo, hi] within kMaxIntegerDigits digits.
bool integer_feasible(bool negative, int64_t mag, uint32_t digits, int64_t lo, int64_t hi) {
  int64_t scale = 1;
  for (uint32_t k = digits; k <= kMaxIntegerDigits; ++k) {
    const int64_t a = mag * scale, b = mag * scale + (scale - 1);
    const int64_t vlo = negative ? -b : a, vhi = negative ? -a : b;
    if (vhi >= lo && vlo <= hi) return true;
    if (mag == 0) break;  // a leading zero takes no more digits
    scale *= 10;
  }
  return false;
}

bool integer_in_range(const Frame& f, const GrammarNode& n) {
  const int64_t v = f.negative ? -static_cast<int64_t>(f.bits) : static_cast<int64_t>(f.bits);
  return v >= n.minimum && v <= n.maximum;
}

}  // namespace

void VocabIndex::Trie::build(std::vector<std::pair<std::string_view, int32_t>> tokens) {
  std::sort(tokens.begin(), tokens.end());
  std::vector<uint32_t> path;  // node at each depth of the previous token
  std::vector<std::pair<uint32_t, int32_t>> ends;
  std::string_view prev;
  for (const auto& [bytes, id] : tokens) {
    size_t common = 0;
    while (common < prev.size() && common < bytes.size() && prev[common] == bytes[common]) {
      ++common;
    }
    while (path.size() > common) {
      skip[path.back()] = static_cast<uint32_t>(byte.size());
      path.pop_back();
    }
    for (size_t d = common; d < bytes.size(); ++d) {
      path.push_back(static_cast<uint32_t>(byte.size()));
      byte.push_back(static_cast<uint8_t>(bytes[d]));
      depth.push_back(static_cast<uint16_t>(d + 1));
      skip.push_back(0);
    }
    max_depth = std::max(max_depth, bytes.size());
    ends.emplace_back(path.back(), id);
    prev = bytes;
  }
  while (!path.empty()) {
    skip[path.back()] = static_cast<uint32_t>(byte.size());
    path.pop_back();
  }
  ends_begin.assign(byte.size() + 1, 0);
  for (const auto& [node, id] : ends) ++ends_begin[node + 1];
  for (size_t k = 0; k < byte.size(); ++k) ends_begin[k + 1] += ends_begin[k];
  ids.resize(ends.size());
  for (size_t k = 0; k < ends.size(); ++k) ids[k] = ends[k].second;  // already in node order
}

VocabIndex::VocabIndex(const std::vector<std::string>& bytes) : vocab(bytes.size()) {
  std::vector<std::pair<std::string_view, int32_t>> every, unsafe;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const std::string& t = bytes[i];
    if (t.empty() || t.size() > UINT16_MAX) continue;
    const auto id = static_cast<int32_t>(i);
    every.emplace_back(t, id);
    // Safe in any plain string body: whole characters, no quote, backslash or control byte.
    Frame f;
    uint32_t chars = 0;
    bool safe = true;
    for (char c : t) {
      const auto b = static_cast<uint8_t>(c);
      const Scan s = b == '\\' ? Scan::kReject : scan_byte(f, b);
      if (s == Scan::kReject || s == Scan::kQuote) {
        safe = false;
        break;
      }
      chars += s == Scan::kChar;
    }
    if (safe && f.utf8_left == 0) {
      string_safe.push_back(id);
      safe_chars.push_back(chars);
    } else {
      unsafe.emplace_back(t, id);
    }
  }
  all.build(std::move(every));
  string_unsafe.build(std::move(unsafe));
}

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> grammar)
    : grammar_(std::move(grammar)) {
  Stack s;
  Frame doc;
  doc.node = kDocument;
  s.frames.push_back(doc);
  state_.stacks.push_back(std::move(s));
  state_.n = 1;
}

bool JsonMatcher::push(uint8_t byte) {
  if (!advance(state_, byte, scratch_)) return false;
  std::swap(state_, scratch_);
  return true;
}

bool JsonMatcher::push(std::string_view bytes) {
  const State saved = state_;
  for (char c : bytes) {
    if (!push(static_cast<uint8_t>(c))) {
      state_ = saved;
      return false;
    }
  }
  return true;
}

bool JsonMatcher::advance(const State& in, uint8_t byte, State& out) const {
  out.n = 0;
  for (size_t k = 0; k < in.n; ++k) {
    if (out.stacks.size() <= out.n) out.stacks.emplace_back();
    const size_t j = out.n++;
    out.stacks[j] = in.stacks[k];
    out.stacks[j].alive = true;
    if (!feed(out, j, byte)) out.stacks[j].alive = false;
  }
  // Drop dead stacks and duplicates (alternatives that read the bytes alike from here on).
  size_t w = 0;
  for (size_t r = 0; r < out.n; ++r) {
    if (!out.stacks[r].alive) continue;
    bool duplicate = false;
    for (size_t k = 0; k < w && !duplicate; ++k) duplicate = out.stacks[k] == out.stacks[r];
    if (duplicate) continue;
    if (r != w) std::swap(out.stacks[w], out.stacks[r]);
    ++w;
  }
  out.n = w;
  return w > 0;
}

size_t JsonMatcher::fork(State& st, size_t i) const {
  if (st.n >= kMaxStacks) return SIZE_MAX;
  if (st.stacks.size() <= st.n) st.stacks.emplace_back();
  st.stacks[st.n] = st.stacks[i];
  return st.n++;
}

bool JsonMatcher::start_value(State& st, size_t i, uint32_t node, uint8_t b) const {
  if (st.stacks[i].frames.size() > static_cast<size_t>(grammar_->limits.max_nesting)) return false;
  const GrammarNode& n = grammar_->nodes[node];
  if (n.kind != NodeKind::kAnyOf) {
    Frame f;
    f.node = node;
    st.stacks[i].frames.push_back(f);
    return feed(st, i, b);
  }
  if (n.alternatives.empty()) return false;
  for (size_t k = 1; k < n.alternatives.size(); ++k) {
    const size_t j = fork(st, i);
    if (j == SIZE_MAX) break;
    Frame f;
    f.node = n.alternatives[k];
    st.stacks[j].frames.push_back(f);
    if (!feed(st, j, b)) st.stacks[j].alive = false;
  }
  Frame f;
  f.node = n.alternatives[0];
  st.stacks[i].frames.push_back(f);
  return feed(st, i, b);
}

bool JsonMatcher::feed(State& st, size_t i, uint8_t b) const {
  Stack& s = st.stacks[i];
  Frame& f = s.frames.back();
  if (f.node == kDocument) {
    // The wrapping text (wrap_json_grammar): matched byte for byte, no whitespace.
    const std::string& text = f.state == kDocBefore ? grammar_->prefix : grammar_->suffix;
    if (f.pos < text.size() || f.state == kDocAfter) {
      if (f.pos >= text.size() || static_cast<uint8_t>(text[f.pos]) != b) return false;
      ++f.pos;
      return true;
    }
  }
  const bool between_tokens = f.node == kDocument ? f.state == kDocBefore
                              : grammar_->nodes[f.node].kind == NodeKind::kObject
                                  ? f.state != kObjOpen && f.state != kObjKeyBody
                              : grammar_->nodes[f.node].kind == NodeKind::kArray
                                  ? f.state != kArrOpen
                                  : false;
  if (between_tokens && is_space(b)) {
    if (s.spaces >= static_cast<uint32_t>(grammar_->limits.max_whitespace)) return false;
    ++s.spaces;
    return true;
  }
  s.spaces = 0;
  if (f.node == kDocument) {
    f.state = kDocAfter;
    f.pos = 0;  // from here on: the position in the suffix
    return start_value(st, i, grammar_->root, b);
  }
  switch (grammar_->nodes[f.node].kind) {
    case NodeKind::kObject:
      return feed_object(st, i, b);
    case NodeKind::kArray:
      return feed_array(st, i, b);
    case NodeKind::kString: {
      Frame& top = st.stacks[i].frames.back();
      if (!feed_string(top, grammar_->nodes[top.node], b)) return false;
      if (top.state == kStrOpen + 2) st.stacks[i].frames.pop_back();  // closed
      return true;
    }
    case NodeKind::kNumber:
      return feed_number(st, i, b);
    case NodeKind::kInteger:
      return feed_integer(st, i, b);
    case NodeKind::kLiteral:
      return feed_literal(st, i, b);
    case NodeKind::kAnyOf:
      break;
  }
  return false;
}

bool JsonMatcher::feed_object(State& st, size_t i, uint8_t b) const {
  Frame& f = st.stacks[i].frames.back();
  const GrammarNode& n = grammar_->nodes[f.node];
  const uint64_t unseen = n.keys.nodes[0].reach & ~f.bits;
  const bool more_keys = unseen != 0 || n.additional >= 0;
  const bool can_close = (n.required & ~f.bits) == 0;
  switch (f.state) {
    case kObjOpen:
      if (b != '{') return false;
      f.state = kObjKeyOrClose;
      return true;
    case kObjKeyOrClose:
    case kObjKey:
      if (b == '}' && f.state == kObjKeyOrClose && can_close) {
        st.stacks[i].frames.pop_back();
        return true;
      }
      if (b != '"' || !more_keys) return false;
      f.state = kObjKeyBody;
      f.pos = 0;
      return true;
    case kObjKeyBody: {
      const Scan scan = scan_byte(f, b);
      if (scan == Scan::kReject) return false;
      if (scan == Scan::kQuote) {
        const int32_t known = f.pos == ByteTrie::kNone ? -1 : n.keys.nodes[f.pos].value;
        if (known >= 0) {
          if (f.bits >> known & 1) return false;  // a duplicate key
          f.prop = known;
        } else if (n.additional >= 0) {
          f.prop = -1;
        } else {
          return false;
        }
        f.state = kObjColon;
        return true;
      }
      if (f.pos != ByteTrie::kNone) f.pos = n.keys.child(f.pos, b);
      if (n.additional < 0 &&
          (f.pos == ByteTrie::kNone || (n.keys.nodes[f.pos].reach & ~f.bits) == 0)) {
        return false;  // no unseen property name starts like this
      }
      return true;
    }
    case kObjColon:
      if (b != ':') return false;
      f.state = kObjValue;
      return true;
    case kObjValue: {
      f.state = kObjAfter;
      uint32_t child;
      if (f.prop >= 0) {
        f.bits |= uint64_t{1} << f.prop;
        child = n.properties[f.prop];
      } else {
        child = static_cast<uint32_t>(n.additional);
      }
      return start_value(st, i, child, b);  // f may dangle from here on
    }
    case kObjAfter:
      if (b == ',' && more_keys) {
        f.state = kObjKey;
        return true;
      }
      if (b == '}' && can_close) {
        st.stacks[i].frames.pop_back();
        return true;
      }
      return false;
  }
  return false;
}

bool JsonMatcher::feed_array(State& st, size_t i, uint8_t b) const {
  Frame& f = st.stacks[i].frames.back();
  const GrammarNode& n = grammar_->nodes[f.node];
  switch (f.state) {
    case kArrOpen:
      if (b != '[') return false;
      f.state = kArrFirst;
      return true;
    case kArrFirst:
    case kArrValue:
      if (b == ']' && f.state == kArrFirst && n.min_items == 0) {
        st.stacks[i].frames.pop_back();
        return true;
      }
      if (f.count >= n.max_items) return false;
      f.state = kArrAfter;
      ++f.count;
      return start_value(st, i, n.items, b);
    case kArrAfter:
      if (b == ',' && f.count < n.max_items) {
        f.state = kArrValue;
        return true;
      }
      if (b == ']' && f.count >= n.min_items) {
        st.stacks[i].frames.pop_back();
        return true;
      }
      return false;
  }
  return false;
}

// On the closing quote the frame's state becomes kStrOpen + 2 (closed) for feed() to pop.
bool JsonMatcher::feed_string(Frame& f, const GrammarNode& n, uint8_t b) const {
  if (f.state == kStrOpen) {
    if (b != '"') return false;
    f.state = kStrBody;
    return true;
  }
  if (n.format != StringFormat::kNone) {
    const char* t = format_template(n.format);
    if (t[f.pos] == '\0') {
      if (b != '"') return false;
      f.state = kStrOpen + 2;
      return true;
    }
    if (!format_accepts(t, f.pos, f.bits, b)) return false;
    if (is_digit(b) && t[f.pos] != 'x') f.bits = f.bits * 10 + (b - '0');
    ++f.pos;
    return true;
  }
  const bool char_start = f.esc == 0 && f.utf8_left == 0 && b != '"';
  if (char_start && f.count >= n.max_length) return false;
  switch (scan_byte(f, b)) {
    case Scan::kReject:
      return false;
    case Scan::kQuote:
      if (f.count < n.min_length) return false;
      f.state = kStrOpen + 2;
      return true;
    case Scan::kChar:
      ++f.count;
      return true;
    case Scan::kPart:
      return true;
  }
  return false;
}

bool JsonMatcher::feed_number(State& st, size_t i, uint8_t b) const {
  Frame& f = st.stacks[i].frames.back();
  const bool digit = is_digit(b);
  switch (f.state) {
    case kNumStart:
    case kNumMinus:
      if (b == '-' && f.state == kNumStart) {
        f.state = kNumMinus;
        return true;
      }
      if (!digit) return false;
      f.state = b == '0' ? kNumZero : kNumInt;
      f.pos = 1;
      return true;
    case kNumInt:
      if (digit && f.pos < kMaxIntDigits) {
        ++f.pos;
        return true;
      }
      [[fallthrough]];
    case kNumZero:
      if (b == '.') {
        f.state = kNumDot;
        return true;
      }
      if (b == 'e' || b == 'E') {
        f.state = kNumE;
        return true;
      }
      break;
    case kNumDot:
      if (!digit) return false;
      f.state = kNumFrac;
      f.count = 1;
      return true;
    case kNumFrac:
      if (digit && f.count < kMaxFracDigits) {
        ++f.count;
        return true;
      }
      if (b == 'e' || b == 'E') {
        f.state = kNumE;
        return true;
      }
      break;
    case kNumE:
      if (b == '+' || b == '-') {
        f.state = kNumESign;
        return true;
      }
      [[fallthrough]];
    case kNumESign:
      if (!digit) return false;
      f.state = kNumExp;
      f.count = 1;
      return true;
    case kNumExp:
      if (digit && f.count < kMaxExpDigits) {
        ++f.count;
        return true;
      }
      break;
  }
  // The number ended; b belongs to what follows.
  st.stacks[i].frames.pop_back();
  return feed(st, i, b);
}

bool JsonMatcher::feed_integer(State& st, size_t i, uint8_t b) const {
  Frame& f = st.stacks[i].frames.back();
  const GrammarNode& n = grammar_->nodes[f.node];
  const bool digit = is_digit(b);
  const int d = b - '0';
  switch (f.state) {
    case kIntStart:
      if (b == '-') {
        if (n.minimum >= 0) return false;
        f.state = kIntMinus;
        f.negative = 1;
        return true;
      }
      [[fallthrough]];
    case kIntMinus:
      if (!digit || !integer_feasible(f.negative, d, 1, n.minimum, n.maximum)) return false;
      f.state = d == 0 ? kIntZero : kIntDigits;
      f.bits = static_cast<uint64_t>(d);
      f.pos = 1;
      return true;
    case kIntDigits:
      if (digit && f.pos < kMaxIntegerDigits &&
          integer_feasible(f.negative, static_cast<int64_t>(f.bits * 10 + d), f.pos + 1, n.minimum,
                           n.maximum)) {
        f.bits = f.bits * 10 + d;
        ++f.pos;
        return true;
      }
      [[fallthrough]];
    case kIntZero:
      if (!integer_in_range(f, n)) return false;
      break;
  }
  st.stacks[i].frames.pop_back();
  return feed(st, i, b);
}

bool JsonMatcher::feed_literal(State& st, size_t i, uint8_t b) const {
  Frame& f = st.stacks[i].frames.back();
  const ByteTrie& trie = grammar_->nodes[f.node].literals;
  const uint32_t next = trie.child(f.pos, b);
  if (next != ByteTrie::kNone) {
    f.pos = next;
    return true;
  }
  if (trie.nodes[f.pos].value < 0) return false;
  st.stacks[i].frames.pop_back();
  return feed(st, i, b);
}

bool JsonMatcher::stack_accepts_end(const Stack& s) const {
  if (s.frames.size() == 1) {
    return s.frames[0].state == kDocAfter && s.frames[0].pos == grammar_->suffix.size();
  }
  if (s.frames.size() != 2 || !grammar_->suffix.empty()) return false;
  const Frame& f = s.frames[1];
  const GrammarNode& n = grammar_->nodes[f.node];
  switch (n.kind) {
    case NodeKind::kNumber:
      return f.state == kNumZero || f.state == kNumInt || f.state == kNumFrac || f.state == kNumExp;
    case NodeKind::kInteger:
      return (f.state == kIntZero || f.state == kIntDigits) && integer_in_range(f, n);
    case NodeKind::kLiteral:
      return n.literals.nodes[f.pos].value >= 0;
    default:
      return false;
  }
}

bool JsonMatcher::accepts_end() const {
  for (size_t k = 0; k < state_.n; ++k) {
    if (stack_accepts_end(state_.stacks[k])) return true;
  }
  return false;
}

bool JsonMatcher::closed() const {
  if (!accepts_end()) return false;
  for (int b = 0; b < 256; ++b) {
    if (advance(state_, static_cast<uint8_t>(b), scratch_)) return false;
  }
  return true;
}

bool JsonMatcher::in_plain_string(uint32_t* chars_left) const {
  if (state_.n != 1) return false;
  const Frame& f = state_.stacks[0].frames.back();
  if (f.node == kDocument) return false;
  const GrammarNode& n = grammar_->nodes[f.node];
  if (n.kind != NodeKind::kString || f.state != kStrBody || n.format != StringFormat::kNone ||
      f.esc != 0 || f.utf8_left != 0) {
    return false;
  }
  *chars_left = n.max_length - f.count;
  return true;
}

void JsonMatcher::walk(const VocabIndex::Trie& trie, std::vector<uint8_t>& allowed) const {
  if (walk_states_.size() < trie.max_depth + 1) walk_states_.resize(trie.max_depth + 1);
  walk_states_[0] = state_;
  const size_t nodes = trie.byte.size();
  for (size_t k = 0; k < nodes;) {
    const size_t d = trie.depth[k];
    if (!advance(walk_states_[d - 1], trie.byte[k], walk_states_[d])) {
      k = trie.skip[k];
      continue;
    }
    for (uint32_t e = trie.ends_begin[k]; e < trie.ends_begin[k + 1]; ++e) allowed[trie.ids[e]] = 1;
    ++k;
  }
}

void JsonMatcher::fill_mask(const VocabIndex& index, std::vector<uint8_t>& allowed) const {
  allowed.assign(index.vocab, 0);
  uint32_t chars_left = 0;
  if (in_plain_string(&chars_left)) {
    for (size_t k = 0; k < index.string_safe.size(); ++k) {
      if (index.safe_chars[k] <= chars_left) allowed[index.string_safe[k]] = 1;
    }
    walk(index.string_unsafe, allowed);
  } else {
    walk(index.all, allowed);
  }
}

}  // namespace af::runtime
