// The JSON-object recogniser behind response_format json_object: every prefix of a valid object
// is accepted, completion is exact, and invalid continuations are refused at the first bad byte.
#include <gtest/gtest.h>

#include "runtime/json_prefix.hpp"

namespace af::runtime {
namespace {

// Feeds text; returns the index of the first refused byte, or -1.
int first_refused(std::string_view text, JsonPrefix& p) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (!p.push(static_cast<uint8_t>(text[i]))) return static_cast<int>(i);
  }
  return -1;
}

TEST(JsonPrefix, AcceptsObjectsAndCompletesAtTheClosingBrace) {
  const char* valid[] = {
      R"({})",
      R"({"a": 1})",
      R"( {"a" : [1, -2.5e+3, 0, 0.25, 1E9, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]} )",
      R"({"nested": {"b": [[], {}, [{"c": "d"}]]}, "utf8": "héllo 你好"})",
      R"({"n": -0.0e-0})",
  };
  for (const char* text : valid) {
    JsonPrefix p;
    std::string_view t(text);
    size_t end = t.find_last_of('}');
    for (size_t i = 0; i < t.size(); ++i) {
      ASSERT_TRUE(p.push(static_cast<uint8_t>(t[i]))) << text << " at " << i;
      EXPECT_EQ(p.complete(), i >= end) << text << " at " << i;
    }
  }
}

TEST(JsonPrefix, RefusesAtTheFirstBadByte) {
  struct Case {
    const char* text;
    int at;
  };
  const Case cases[] = {
      {"[1]", 0},              // the document must be an object
      {"\"x\"", 0},            // ... not a string
      {"{a", 1},               // keys are strings
      {"{\"a\" 1", 5},         // colon needed
      {"{\"a\":}", 5},         // value needed
      {"{\"a\":1,}", 7},       // no trailing comma
      {"{\"a\":01}", 6},       // no leading zeros
      {"{\"a\":-}", 6},        // digits after minus
      {"{\"a\":1.}", 7},       // digits after the dot
      {"{\"a\":1e}", 7},       // digits in the exponent
      {"{\"a\":tru}", 8},      // literals spelled out
      {"{\"a\":nul1}", 8},     //
      {"{\"a\":\"\\x\"}", 7},  // unknown escape
      {"{\"a\":\"\\u12g\"}", 10},
      {"{\"a\":\"\n\"}", 6},  // raw control character in a string
      {"{\"a\":[1}", 7},      // mismatched bracket
      {"{}}", 2},             // nothing after the object
      {"{}x", 2},
      {"{      }", 5},  // at most 4 whitespace bytes in a row
  };
  for (const Case& c : cases) {
    JsonPrefix p;
    EXPECT_EQ(first_refused(c.text, p), c.at) << c.text;
  }
}

TEST(JsonPrefix, NestingIsBounded) {
  JsonPrefix p;
  ASSERT_TRUE(p.push('{'));
  ASSERT_TRUE(p.push(R"("a":)"));
  for (int i = 1; i < JsonPrefix::kMaxDepth; ++i) ASSERT_TRUE(p.push('[')) << i;
  EXPECT_FALSE(p.push('['));
}

}  // namespace
}  // namespace af::runtime
