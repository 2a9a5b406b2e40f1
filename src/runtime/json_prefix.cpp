#include "runtime/json_prefix.hpp"

namespace af::runtime {

bool JsonPrefix::start_value(uint8_t b) {
  switch (b) {
    case '{':
    case '[':
      if (depth_ == kMaxDepth) return false;
      stack_[depth_++] = static_cast<char>(b);
      mode_ = b == '{' ? Mode::kKeyOrClose : Mode::kValueOrClose;
      return true;
    case '"':
      mode_ = Mode::kString;
      string_is_key_ = false;
      return true;
    case '-':
      mode_ = Mode::kNumber;
      num_ = Num::kMinus;
      return true;
    case 't':
      mode_ = Mode::kLiteral;
      literal_rest_ = "rue";
      return true;
    case 'f':
      mode_ = Mode::kLiteral;
      literal_rest_ = "alse";
      return true;
    case 'n':
      mode_ = Mode::kLiteral;
      literal_rest_ = "ull";
      return true;
    default:
      if (b >= '0' && b <= '9') {
        mode_ = Mode::kNumber;
        num_ = b == '0' ? Num::kZero : Num::kInt;
        return true;
      }
      return false;
  }
}

bool JsonPrefix::end_value() {
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
  return true;
}

bool JsonPrefix::close(uint8_t b) {
  if (depth_ == 0 || stack_[depth_ - 1] != (b == '}' ? '{' : '[')) return false;
  --depth_;
  return end_value();
}

bool JsonPrefix::push(uint8_t b) {
  // Whitespace between tokens, bounded so that generation cannot idle in it forever.
  const bool between_tokens = mode_ == Mode::kTop || mode_ == Mode::kValue ||
                              mode_ == Mode::kValueOrClose || mode_ == Mode::kKeyOrClose ||
                              mode_ == Mode::kKey || mode_ == Mode::kColon ||
                              mode_ == Mode::kAfterValue || mode_ == Mode::kDone;
  if (between_tokens && space(b)) {
    if (spaces_ == kMaxSpaces) return false;
    ++spaces_;
    return true;
  }
  spaces_ = 0;
  switch (mode_) {
    case Mode::kTop:
      // json_object: the document is an object.
      if (b != '{') return false;
      return start_value(b);
    case Mode::kValue:
      return start_value(b);
    case Mode::kValueOrClose:
      return b == ']' ? close(b) : start_value(b);
    case Mode::kKeyOrClose:
      if (b == '}') return close(b);
      [[fallthrough]];
    case Mode::kKey:
      if (b != '"') return false;
      mode_ = Mode::kString;
      string_is_key_ = true;
      return true;
    case Mode::kColon:
      if (b != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kAfterValue:
      if (b == ',') {
        mode_ = stack_[depth_ - 1] == '{' ? Mode::kKey : Mode::kValue;
        return true;
      }
      if (b == '}' || b == ']') return close(b);
      return false;
    case Mode::kString:
      if (b == '"') {
        if (string_is_key_) {
          mode_ = Mode::kColon;
          return true;
        }
        return end_value();
      }
      if (b == '\\') {
        mode_ = Mode::kEscape;
        return true;
      }
      return b >= 0x20;  // control characters must be escaped
    case Mode::kEscape:
      if (b == 'u') {
        mode_ = Mode::kUnicode;
        hex_left_ = 4;
        return true;
      }
      if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' || b == 'r' ||
          b == 't') {
        mode_ = Mode::kString;
        return true;
      }
      return false;
    case Mode::kUnicode: {
      const bool hex = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
      if (!hex) return false;
      if (--hex_left_ == 0) mode_ = Mode::kString;
      return true;
    }
    case Mode::kNumber: {
      const bool digit = b >= '0' && b <= '9';
      switch (num_) {
        case Num::kMinus:
          if (!digit) return false;
          num_ = b == '0' ? Num::kZero : Num::kInt;
          return true;
        case Num::kZero:
        case Num::kInt:
          if (digit && num_ == Num::kInt) return true;
          if (b == '.') {
            num_ = Num::kDot;
            return true;
          }
          if (b == 'e' || b == 'E') {
            num_ = Num::kE;
            return true;
          }
          break;  // the number ended; b belongs to what follows
        case Num::kDot:
          if (!digit) return false;
          num_ = Num::kFrac;
          return true;
        case Num::kFrac:
          if (digit) return true;
          if (b == 'e' || b == 'E') {
            num_ = Num::kE;
            return true;
          }
          break;
        case Num::kE:
          if (b == '+' || b == '-') {
            num_ = Num::kESign;
            return true;
          }
          [[fallthrough]];
        case Num::kESign:
          if (!digit) return false;
          num_ = Num::kExp;
          return true;
        case Num::kExp:
          if (digit) return true;
          break;
      }
      end_value();
      return push(b);
    }
    case Mode::kLiteral:
      if (static_cast<uint8_t>(*literal_rest_) != b) return false;
      ++literal_rest_;
      if (*literal_rest_ == '\0') return end_value();
      return true;
    case Mode::kDone:
      return false;
  }
  return false;
}

}  // namespace af::runtime
