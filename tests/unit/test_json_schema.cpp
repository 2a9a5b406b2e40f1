// JSON Schema -> grammar -> byte matcher -> token mask (src/runtime/json_schema.cpp,
// json_matcher.cpp): schemas are compiled or refused naming the keyword, every document the
// matcher lets through validates (random schemas, random documents), and the trie-walked token
// mask equals trying every token on its own.
#include <gtest/gtest.h>

#include <random>

#include "af/core/error.hpp"
#include "af/runtime/json_schema.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "runtime/json_matcher.hpp"
#include "test_util.hpp"

namespace af::runtime {
namespace {

using nlohmann::json;

// Feeds text; returns the index of the first refused byte, or -1.
int first_refused(std::string_view text, JsonMatcher& m) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (!m.push(static_cast<uint8_t>(text[i]))) return static_cast<int>(i);
  }
  return -1;
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

// A validator for the supported subset (additionalProperties absent = false, as compiled).
bool validates(const json& v, const json& s, const json& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return validates(v, ref == "#" ? root : root.at(json::json_pointer(ref.substr(1))), root);
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    for (const json& alt : s[key]) {
      if (validates(v, alt, root)) return true;
    }
    return false;
  }
  if (s.contains("allOf")) return validates(v, s["allOf"][0], root);
  if (s.contains("const")) return v == s["const"];
  if (s.contains("enum")) {
    for (const json& e : s["enum"]) {
      if (v == e) return true;
    }
    return false;
  }
  if (!s.contains("type")) return true;
  if (s["type"].is_array()) {
    for (const json& t : s["type"]) {
      json one = s;
      one["type"] = t;
      if (validates(v, one, root)) return true;
    }
    return false;
  }
  const std::string type = s["type"];
  if (type == "null") return v.is_null();
  if (type == "boolean") return v.is_boolean();
  if (type == "number") return v.is_number();
  if (type == "integer") {
    if (!v.is_number_integer()) return false;
    const auto x = v.get<int64_t>();
    return x >= s.value("minimum", INT64_MIN) && x <= s.value("maximum", INT64_MAX);
  }
  if (type == "string") {
    if (!v.is_string()) return false;
    const size_t n = code_points(v.get<std::string>());
    return n >= s.value("minLength", size_t{0}) && n <= s.value("maxLength", SIZE_MAX);
  }
  if (type == "array") {
    if (!v.is_array()) return false;
    if (v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", SIZE_MAX)) {
      return false;
    }
    for (const json& item : v) {
      if (!validates(item, s.value("items", json(true)), root)) return false;
    }
    return true;
  }
  if (type == "object") {
    if (!v.is_object()) return false;
    const json props = s.value("properties", json::object());
    for (const json& r : s.value("required", json::array())) {
      if (!v.contains(r.get<std::string>())) return false;
    }
    for (const auto& [key, value] : v.items()) {
      if (props.contains(key)) {
        if (!validates(value, props[key], root)) return false;
      } else if (!validates(value, s.value("additionalProperties", json(false)), root)) {
        return false;
      }
    }
    return true;
  }
  return false;
}

// A random document the matcher allows: random accepted bytes (closing ones favoured so that
// documents end), stopping at the first point where the document may end with probability
// 1/3. Returns false when it has not ended within max_bytes.
bool random_document(JsonMatcher m, std::mt19937& rng, std::string& out, size_t max_bytes = 4000) {
  out.clear();
  std::vector<uint8_t> ok;
  while (out.size() < max_bytes) {
    if (m.accepts_end() && (m.closed() || rng() % 3 == 0)) return true;
    ok.clear();
    for (int b = 0; b < 256; ++b) {
      JsonMatcher next = m;
      if (next.push(static_cast<uint8_t>(b))) ok.push_back(static_cast<uint8_t>(b));
    }
    if (ok.empty()) return false;  // a dead end: must never happen
    uint8_t pick = ok[rng() % ok.size()];
    for (uint8_t closer : {'"', '}', ']', ','}) {
      if (std::find(ok.begin(), ok.end(), closer) != ok.end() && rng() % 4 == 0) pick = closer;
    }
    EXPECT_TRUE(m.push(pick));
    out.push_back(static_cast<char>(pick));
  }
  return false;
}

json random_schema(std::mt19937& rng, int depth) {
  const int kind = static_cast<int>(rng() % (depth > 0 ? 10 : 6));
  switch (kind) {
    case 0:
      return {{"type", "string"}, {"maxLength", 1 + rng() % 6}, {"minLength", rng() % 2}};
    case 1:
      return {{"type", "integer"},
              {"minimum", -5 + static_cast<int>(rng() % 10)},
              {"maximum", 10 + static_cast<int>(rng() % 300)}};
    case 2:
      return {{"type", "number"}};
    case 3:
      return {{"enum", {"red", 7, nullptr, json::array({1, 2}), "green"}}};
    case 4:
      return {{"type", "boolean"}};
    case 5:
      return {{"type", "string"}, {"format", rng() % 2 ? "date" : "uuid"}};
    case 6: {
      json s = {{"type", "array"}, {"items", random_schema(rng, depth - 1)}};
      s["minItems"] = rng() % 2;
      s["maxItems"] = 1 + rng() % 3;
      return s;
    }
    case 7:
      return {{"anyOf", {random_schema(rng, depth - 1), random_schema(rng, depth - 1)}}};
    case 8:
      return {{"type", json::array({"null", "integer", "string"})}, {"maxLength", 3}};
    default: {
      json s = {{"type", "object"}, {"properties", json::object()}};
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i) {
        std::string name = "p";
        name.push_back(static_cast<char>('a' + i));
        s["properties"][name] = random_schema(rng, depth - 1);
        if (rng() % 2) s["required"].push_back(name);
      }
      if (rng() % 3 == 0) s["additionalProperties"] = {{"type", "integer"}};
      return s;
    }
  }
}

TEST(JsonSchema, RandomDocumentsOfRandomSchemasValidate) {
  std::mt19937 rng(7);
  int documents = 0;
  for (int round = 0; round < 40; ++round) {
    const json schema = random_schema(rng, 3);
    const JsonMatcher matcher(compile_json_schema(schema));
    for (int k = 0; k < 6; ++k) {
      std::string text;
      if (!random_document(matcher, rng, text, 1500)) continue;  // long strings: not an error
      ++documents;
      json doc;
      ASSERT_NO_THROW(doc = json::parse(text)) << schema.dump() << "\n" << text;
      EXPECT_TRUE(validates(doc, schema, schema)) << schema.dump() << "\n" << text;
    }
  }
  EXPECT_GT(documents, 180);
}

TEST(JsonSchema, ObjectsFollowPropertiesRequiredAndAdditional) {
  const json schema = json::parse(R"({
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                   "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
    "required": ["name"], "additionalProperties": false})");
  const auto g = compile_json_schema(schema);
  for (const char* ok : {R"({"name": "x"})", R"({"age": 3, "name": "y", "tags": ["a", "b"]})",
                         "{\n  \"tags\": [],\n  \"name\": \"\\u00e9\"\n}"}) {
    JsonMatcher m(g);
    EXPECT_EQ(first_refused(ok, m), -1) << ok;
    EXPECT_TRUE(m.accepts_end() && m.closed()) << ok;
  }
  struct Case {
    const char* text;
    int at;
  };
  const Case bad[] = {
      {R"({})", 1},                                     // "name" is required
      {R"({"nam")", 5},                                 // not a property name
      {R"({"other")", 2},                               // no additional properties
      {R"({"name": "x", "name")", 15},                  // no duplicates
      {R"({"name": 1)", 9},                             // a string
      {R"({"age": -1)", 8},                             // minimum 0
      {R"({"age": 1.5)", 9},                            // an integer
      {R"({"tags": ["c")", 11},                         // enum
      {R"({"tags": ["a", "a", "b")", 18},               // maxItems 2
      {R"({"name": "x"} )", 13},                        // nothing after the document
      {R"({"name": "x", "age": 1, "tags": [], )", 34},  // no property left to add
  };
  for (const Case& c : bad) {
    JsonMatcher m(g);
    EXPECT_EQ(first_refused(c.text, m), c.at) << c.text;
  }
}

TEST(JsonSchema, AnyObjectMatchesRfc8259) {
  const auto g = json_object_grammar();
  for (const char* ok :
       {R"({})", R"({"a": 1})",
        R"( {"a" : [1, -2.5e+3, 0, 0.25, 1E9, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]})",
        R"({"nested": {"b": [[], {}, [{"c": "d"}]]}, "utf8": "héllo 你好"})",
        R"({"n": -0.0e-0})"}) {
    JsonMatcher m(g);
    const std::string_view t(ok);
    const size_t end = t.find_last_of('}');
    for (size_t i = 0; i < t.size(); ++i) {
      ASSERT_TRUE(m.push(static_cast<uint8_t>(t[i]))) << ok << " at " << i;
      EXPECT_EQ(m.closed(), i >= end) << ok << " at " << i;
    }
  }
  struct Case {
    const char* text;
    int at;
  };
  const Case bad[] = {
      {"[1]", 0},
      {"\"x\"", 0},
      {"{a", 1},
      {"{\"a\" 1", 5},
      {"{\"a\":}", 5},
      {"{\"a\":1,}", 7},
      {"{\"a\":01}", 6},
      {"{\"a\":-}", 6},
      {"{\"a\":1.}", 7},
      {"{\"a\":1e}", 7},
      {"{\"a\":tru}", 8},
      {"{\"a\":nul1}", 8},
      {"{\"a\":\"\\x\"}", 7},
      {"{\"a\":\"\\u12g\"}", 10},
      {"{\"a\":\"\n\"}", 6},
      {"{\"a\":[1}", 7},
      {"{}}", 2},
      {"{}x", 2},
      {"{\"a\":\"\xC0\xAF\"}", 6},        // an overlong UTF-8 form
      {"{\"a\":\"\xED\xA0\x80\"}", 7},    // a UTF-8 surrogate
      {"{\"a\":\"\\ud83d\\ude00\"}", 9},  // surrogates are written as UTF-8
      {"{      }", 5},                    // at most 4 whitespace bytes in a row
  };
  for (const Case& c : bad) {
    JsonMatcher m(g);
    EXPECT_EQ(first_refused(c.text, m), c.at) << c.text;
  }
}

TEST(JsonSchema, NestingIsBounded) {
  JsonMatcher m(json_object_grammar());
  ASSERT_TRUE(m.push(R"({"a":)"));
  // 32 values may be open at once (here the object and 31 arrays): no 33rd.
  for (int i = 0; i < 31; ++i) ASSERT_TRUE(m.push('[')) << i;
  EXPECT_FALSE(m.push('['));
  EXPECT_FALSE(m.push('1'));
  EXPECT_TRUE(m.push("],1"));
}

TEST(JsonSchema, IntegersStayInRangeAndFormatsAreValid) {
  const auto ints =
      compile_json_schema_text(R"({"type": "integer", "minimum": -20, "maximum": 305})");
  for (const char* ok : {"-20", "0", "-0", "305", "7", "-9", "99"}) {
    JsonMatcher m(ints);
    EXPECT_EQ(first_refused(ok, m), -1) << ok;
    EXPECT_TRUE(m.accepts_end()) << ok;
  }
  for (const char* bad : {"-21", "306", "3050", "-200", "01", "1.0"}) {
    JsonMatcher m(ints);
    EXPECT_FALSE(m.push(bad) && m.accepts_end()) << bad;
  }
  const auto date = compile_json_schema_text(R"({"type": "string", "format": "date"})");
  for (const char* ok : {"\"2024-02-29\"", "\"1999-12-31\"", "\"2023-01-01\""}) {
    JsonMatcher m(date);
    EXPECT_EQ(first_refused(ok, m), -1) << ok;
  }
  for (const char* bad : {"\"2023-02-29\"", "\"2023-13-01\"", "\"2023-00-10\"", "\"0999-01-01\"",
                          "\"2023-04-31\"", "\"2023-1-01\""}) {
    JsonMatcher m(date);
    EXPECT_NE(first_refused(bad, m), -1) << bad;
  }
  JsonMatcher uuid(compile_json_schema_text(R"({"format": "uuid"})"));
  EXPECT_EQ(first_refused("\"123e4567-e89b-12d3-a456-426614174000\"", uuid), -1);
  EXPECT_TRUE(uuid.closed());
}

TEST(JsonSchema, RefsAndRecursion) {
  const json schema = json::parse(R"({
    "$defs": {"node": {"type": "object",
      "properties": {"v": {"type": "integer"},
                     "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"]}},
    "$ref": "#/$defs/node"})");
  JsonMatcher m(compile_json_schema(schema));
  EXPECT_EQ(first_refused(R"({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}, {"v": 4}]})", m), -1);
  EXPECT_TRUE(m.closed());
  JsonMatcher bad(compile_json_schema(schema));
  EXPECT_EQ(first_refused(R"({"v": 1, "kids": [{"x")", bad), 20);
}

void expect_error(const std::string& schema, ErrorCode code, const std::string& needle,
                  const JsonSchemaLimits& limits = {}) {
  try {
    compile_json_schema_text(schema, limits);
    ADD_FAILURE() << "accepted: " << schema;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(JsonSchema, BadSchemasNameTheKeyword) {
  expect_error(R"({"type": "string", "pattern": "^a"})", ErrorCode::kUnsupported,
               "unsupported keyword 'pattern' at #");
  expect_error(R"({"properties": {"x": {"type": "number", "minimum": 1}}})",
               ErrorCode::kUnsupported, "'minimum' for type 'number' at #/properties/x");
  expect_error(R"({"type": "string", "format": "email"})", ErrorCode::kUnsupported,
               "unsupported format 'email'");
  expect_error(R"({"type": "array", "minItems": 3, "maxItems": 2})", ErrorCode::kInvalidArgument,
               "'minItems' exceeds 'maxItems' at #/minItems");
  expect_error(R"({"$ref": "#/$defs/missing"})", ErrorCode::kInvalidArgument, "does not resolve");
  expect_error(R"({"$ref": "http://x/s.json"})", ErrorCode::kUnsupported, "only local");
  expect_error(R"({"anyOf": [{"$ref": "#"}, {"type": "null"}]})", ErrorCode::kInvalidArgument,
               "refers to itself");
  expect_error(R"({"type": "object", "required": ["x"]})", ErrorCode::kUnsupported,
               "required property 'x'");
  expect_error(R"({"type": "strin"})", ErrorCode::kInvalidArgument, "unknown type 'strin'");
  expect_error(R"({"type": "integer", "minimum": 5, "maximum": 4})", ErrorCode::kInvalidArgument,
               "no integer");
  expect_error("{", ErrorCode::kInvalidArgument, "not valid JSON");
  expect_error(R"({"enum": []})", ErrorCode::kInvalidArgument, "non-empty");
}

TEST(JsonSchema, LimitsBoundHugeAndDeepSchemas) {
  json wide = {{"type", "object"}, {"properties", json::object()}};
  for (int i = 0; i < 65; ++i) wide["properties"][std::to_string(i)] = {{"type", "null"}};
  expect_error(wide.dump(), ErrorCode::kOutOfRange, "more than 64 properties");
  json deep = {{"type", "null"}};
  for (int i = 0; i < 100; ++i) deep = {{"type", "array"}, {"items", deep}};
  expect_error(deep.dump(), ErrorCode::kOutOfRange, "nests deeper than 64");
  expect_error(std::string(300 << 10, ' '), ErrorCode::kOutOfRange, "over the limit");
  JsonSchemaLimits small;
  small.max_nodes = 10;
  json many = json::array();
  for (int i = 0; i < 20; ++i) many.push_back({{"type", "integer"}});
  expect_error(json({{"anyOf", many}}).dump(), ErrorCode::kOutOfRange, "more than 10 nodes", small);
}

// fill_mask against trying each token on its own, at every point of random documents.
void expect_mask_matches(const std::vector<std::string>& vocab, const json& schema,
                         std::mt19937& rng, int documents, size_t stride) {
  const VocabIndex index(vocab);
  const auto g = compile_json_schema(schema);
  std::vector<uint8_t> mask;
  for (int d = 0; d < documents; ++d) {
    std::string text;
    random_document(JsonMatcher(g), rng, text, 300);
    JsonMatcher m(g);
    for (size_t i = 0; i <= text.size(); i += stride) {
      m.fill_mask(index, mask);
      for (size_t t = 0; t < vocab.size(); ++t) {
        JsonMatcher one = m;
        const bool expected = !vocab[t].empty() && one.push(vocab[t]);
        ASSERT_EQ(mask[t], expected)
            << "token " << t << " '" << vocab[t] << "' after '" << text.substr(0, i) << "'";
      }
      for (size_t k = i; k < std::min(i + stride, text.size()); ++k) {
        ASSERT_TRUE(m.push(static_cast<uint8_t>(text[k])));
      }
    }
  }
}

const char* kMaskSchema = R"({"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "n": {"type": "integer", "maximum": 500},
    "x": {"type": "number"}, "ok": {"type": "boolean"},
    "list": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
    "required": ["name", "list"]})";

TEST(JsonSchema, TrieMaskEqualsPerTokenMatching) {
  std::mt19937 rng(11);
  const std::string alphabet = "{}[]\":, \n0123456789.-eEtrufalsn\\abxyz\xC3\xA9\xE4\xBD\xA0\x01";
  std::vector<std::string> vocab(3000);
  for (size_t i = 1; i < vocab.size(); ++i) {  // id 0 stays empty (a special token)
    const size_t len = 1 + rng() % 5;
    for (size_t k = 0; k < len; ++k) vocab[i].push_back(alphabet[rng() % alphabet.size()]);
  }
  expect_mask_matches(vocab, json::parse(kMaskSchema), rng, 3, 1);
}

TEST(JsonSchema, TrieMaskEqualsPerTokenMatchingOnQwenVocabulary) {
  const std::string dir = test::testdata_dir() + "/tokenizer/hf/qwen2.5";
  AF_REQUIRE_TESTDATA(dir);
  const auto tokenizer = tok::Tokenizer::load(dir);
  std::vector<std::string> vocab(tokenizer->vocab_size());
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    if (tokenizer->is_assigned(id) && !tokenizer->is_special(id)) {
      vocab[id] = tokenizer->token_bytes(id, false);
    }
  }
  std::mt19937 rng(5);
  expect_mask_matches(vocab, json::parse(kMaskSchema), rng, 1, 60);
}

}  // namespace
}  // namespace af::runtime
