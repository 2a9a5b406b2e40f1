#pragma once
// A byte-level recogniser of JSON text that must be one object (RFC 8259 grammar), fed one byte
// at a time: it says whether the bytes so far can still be extended to such a document, and
// when the object is complete. Used to constrain generation for response_format json_object.
// The state is a small value type (copied once per candidate token), so nesting is limited.
#include <array>
#include <cstdint>
#include <string_view>

namespace af::runtime {

class JsonPrefix {
 public:
  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxSpaces = 4;  // consecutive whitespace bytes between tokens

  // Feeds one byte; false if the bytes can no longer become a JSON object (the state is then
  // unspecified: try candidates on a copy).
  bool push(uint8_t byte);
  bool push(std::string_view bytes) {
    for (char c : bytes) {
      if (!push(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  // The top-level object is closed: nothing more may follow but whitespace.
  bool complete() const { return mode_ == Mode::kDone; }

 private:
  enum class Mode : uint8_t {
    kTop,           // before the top-level '{'
    kValue,         // a value must start
    kValueOrClose,  // after '[': a value or ']'
    kKeyOrClose,    // after '{': '"' or '}'
    kKey,           // after ',' in an object: '"'
    kColon,         // after a key
    kAfterValue,    // ',' or the container's closing bracket
    kString,
    kEscape,
    kUnicode,  // inside \uXXXX; hex_left_ digits to go
    kNumber,
    kLiteral,  // inside true / false / null
    kDone,
  };
  enum class Num : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kE, kESign, kExp };

  bool start_value(uint8_t byte);
  bool end_value();
  bool close(uint8_t byte);
  static bool space(uint8_t b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }

  Mode mode_ = Mode::kTop;
  Num num_ = Num::kInt;
  bool string_is_key_ = false;
  uint8_t hex_left_ = 0;
  uint8_t spaces_ = 0;
  uint8_t depth_ = 0;
  const char* literal_rest_ = nullptr;      // the letters of true/false/null still expected
  std::array<char, kMaxDepth> stack_ = {};  // '{' or '[' per open container
};

}  // namespace af::runtime
