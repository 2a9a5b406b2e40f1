// POST /v1/embeddings request parsing and response building (apps/server/embeddings_api.hpp).
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "embeddings_api.hpp"

namespace af::server {
namespace {

ApiError error_of(const std::string& body) {
  try {
    parse_embedding_request(body);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body;
  return ApiError(0, "");
}

TEST(EmbeddingsApi, InputShapes) {
  EXPECT_EQ(parse_embedding_request(R"({"input": "hi"})").texts, std::vector<std::string>{"hi"});
  const auto list = parse_embedding_request(R"({"input": ["a", "b c"], "model": "m"})");
  EXPECT_EQ(list.texts, (std::vector<std::string>{"a", "b c"}));
  EXPECT_EQ(list.model, "m");
  const auto ids = parse_embedding_request(R"({"input": [1, 2, 3]})");
  ASSERT_EQ(ids.ids.size(), 1u);
  EXPECT_EQ(ids.ids[0], (std::vector<int32_t>{1, 2, 3}));
  const auto id_lists = parse_embedding_request(R"({"input": [[1], [2, 3]]})");
  EXPECT_EQ(id_lists.size(), 2u);
  EXPECT_TRUE(id_lists.texts.empty());
}

TEST(EmbeddingsApi, FormatAndDimensions) {
  const auto r =
      parse_embedding_request(R"({"input": "x", "encoding_format": "base64", "dimensions": 8})");
  EXPECT_TRUE(r.base64);
  EXPECT_EQ(r.dimensions, 8);
  EXPECT_FALSE(parse_embedding_request(R"({"input": "x", "encoding_format": "float"})").base64);
  EXPECT_EQ(error_of(R"({"input": "x", "encoding_format": "int8"})").param, "encoding_format");
  EXPECT_EQ(error_of(R"({"input": "x", "dimensions": 0})").param, "dimensions");
  EXPECT_EQ(error_of(R"({"input": "x", "dimensions": 1.5})").param, "dimensions");
}

TEST(EmbeddingsApi, BadInputsNameTheField) {
  EXPECT_EQ(error_of(R"({})").param, "input");
  EXPECT_EQ(error_of(R"({"input": ""})").param, "input");
  EXPECT_EQ(error_of(R"({"input": []})").param, "input");
  EXPECT_EQ(error_of(R"({"input": {"a": 1}})").param, "input");
  EXPECT_EQ(error_of(R"({"input": ["a", 3]})").param, "input[1]");
  EXPECT_EQ(error_of(R"({"input": ["a", ""]})").param, "input[1]");
  EXPECT_EQ(error_of(R"({"input": [[1], []]})").param, "input[1]");
  EXPECT_EQ(error_of(R"({"input": [[1], [2, -1]]})").param, "input[1][1]");
  EXPECT_EQ(error_of(R"({"input": [1, 2.5]})").param, "input[1]");
  EXPECT_EQ(error_of(R"({"input": [4294967296]})").param, "input[0]");
  EXPECT_EQ(error_of(R"([1])").code, "invalid_json");
  EXPECT_EQ(error_of(R"({"input": )").code, "invalid_json");
}

TEST(EmbeddingsApi, InputCountIsBounded) {
  std::string body = R"({"input": [)";
  for (int i = 0; i < 2049; ++i) body += i ? ",\"a\"" : "\"a\"";
  body += "]}";
  const ApiError e = error_of(body);
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("at most 2048"), std::string::npos) << e.message;
}

TEST(EmbeddingsApi, Base64IsLittleEndianFloat32) {
  // 1.0f = 00 00 80 3f; -2.0f = 00 00 00 c0.
  EXPECT_EQ(base64_floats({1.0f}), "AACAPw==");
  EXPECT_EQ(base64_floats({1.0f, -2.0f}), "AACAPwAAAMA=");
  EXPECT_EQ(base64_floats({}), "");
  const auto body = embedding_response({{0.5f, 0.25f}}, false, "m", 7);
  EXPECT_EQ(body["object"], "list");
  EXPECT_EQ(body["data"][0]["object"], "embedding");
  EXPECT_EQ(body["data"][0]["index"], 0);
  EXPECT_EQ(body["data"][0]["embedding"][1].get<float>(), 0.25f);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(body["usage"]["total_tokens"], 7);
}

}  // namespace
}  // namespace af::server
