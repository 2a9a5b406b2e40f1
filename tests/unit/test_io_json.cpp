// io::detail::parse_json: linear time, depth and value-count caps, duplicate keys, error text.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "af/core/error.hpp"
#include "io/json_util.hpp"
#include "test_util.hpp"

namespace af::io::detail {
namespace {

using json = nlohmann::json;

// "[{"k":0,"s":"x"},{"k":1,"s":"x"},...]": n small objects, the shape that made nlohmann's
// callback parser quadratic.
std::string small_objects(int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    s += "{\"k\":" + std::to_string(i) + ",\"s\":\"x\"}";
  }
  return s + "]";
}

// The fastest of three parses, in seconds (the machine is shared; the minimum is the signal).
double parse_seconds(const std::string& text) {
  double best = 1e9;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    json j = parse_json(text, "mem.json", "test");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_TRUE(j.is_array());
    best = std::min(best, s);
  }
  return best;
}

// Expects parse_json to throw af::Error(kFormat) naming the origin and containing `part`.
void expect_error(const std::string& text, const JsonLimits& limits, const std::string& part) {
  try {
    parse_json(text, "mem.json", "test", limits);
    ADD_FAILURE() << "parsed, expected an error mentioning " << part;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.component(), "test");
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mem.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' in " << msg;
  }
}

TEST(IoJson, ParseTimeIsLinearInSmallObjects) {
  // Before: nlohmann's callback parser rescanned the parent array after every object, so 4x the
  // objects took 16x the time (200k objects: over a minute). Now both are milliseconds.
  const std::string small = small_objects(50'000), large = small_objects(200'000);
  const double t_small = parse_seconds(small), t_large = parse_seconds(large);
  // Linear gives about 4; quadratic about 16. Loose, for a busy shared machine.
  EXPECT_LT(t_large, 9 * std::max(t_small, 1e-3)) << t_small << " s vs " << t_large << " s";
#if defined(NDEBUG)
  EXPECT_LT(t_large, 2.0 * af::test::time_scale()) << "200k objects (" << large.size() << " bytes)";
#endif
  const json j = parse_json(large, "mem.json", "test");
  ASSERT_EQ(j.size(), 200'000u);
  EXPECT_EQ(j[199'999]["k"], 199'999);
  EXPECT_EQ(j[5]["s"], "x");
}

TEST(IoJson, BuildsTheSameDocumentAsNlohmann) {
  const std::string text = R"({"a": [1, -2, 3.5, 1e300, 18446744073709551615, true, false, null],
    "b": {"c": {"d": [[], {}, [[]]]}, "e": "\u00e9\n\"x\""}, "": 0, "big": -9223372036854775808})";
  EXPECT_EQ(parse_json(text, "mem.json", "test"), json::parse(text));
  EXPECT_EQ(parse_json("  7 ", "mem.json", "test"), json(7));
  EXPECT_EQ(parse_json("\"s\"", "mem.json", "test"), json("s"));
}

TEST(IoJson, InvalidJsonNamesTheOrigin) {
  expect_error("{\"a\": }", {}, "invalid JSON");
  expect_error("[1, 2", {}, "invalid JSON");
  expect_error("{} {}", {}, "invalid JSON");  // one value only
  expect_error("", {}, "invalid JSON");
}

TEST(IoJson, DepthCapGivesAClearError) {
  JsonLimits limits;
  limits.max_depth = 8;
  EXPECT_NO_THROW(parse_json(std::string(8, '[') + std::string(8, ']'), "m", "t", limits));
  expect_error(std::string(9, '[') + std::string(9, ']'), limits, "deeper than 8 levels");
  expect_error(std::string(9, '['), limits, "deeper than 8 levels");  // before the syntax error
  // The default (64) also holds for objects, and a deep hostile document fails fast.
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += "{\"a\":";
  expect_error(deep, {}, "deeper than 64 levels");
}

TEST(IoJson, ElementCapGivesAClearError) {
  JsonLimits limits;
  limits.max_elements = 1000;
  // The root array plus 999 numbers: exactly at the cap.
  std::string ok = "[0";
  for (int i = 1; i < 999; ++i) ok += ",0";
  ok += "]";
  EXPECT_EQ(parse_json(ok, "m", "t", limits).size(), 999u);
  expect_error(ok.substr(0, ok.size() - 1) + ",0]", limits, "more than 1000 values");
  // Objects and their members count too.
  expect_error(small_objects(400), limits, "more than 1000 values");
}

TEST(IoJson, DuplicateKeysRejectedOnlyWhenAsked) {
  JsonLimits strict;
  strict.reject_duplicate_keys = true;
  expect_error(R"({"a": 1, "b": 2, "a": 3})", strict, "duplicate JSON key \"a\"");
  expect_error(R"({"x": {"k": 1, "k": 2}})", strict, "duplicate JSON key \"k\"");
  // The same key in different objects is not a duplicate.
  const json j = parse_json(R"({"x": {"k": 1}, "y": {"k": 2}, "k": [{"k": 3}]})", "m", "t", strict);
  EXPECT_EQ(j["y"]["k"], 2);
  // Without the flag the last value wins, as in Python.
  EXPECT_EQ(parse_json(R"({"a": 1, "a": {"b": 2}})", "m", "t")["a"]["b"], 2);
}

}  // namespace
}  // namespace af::io::detail
