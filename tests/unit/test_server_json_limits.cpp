// af-server's request bodies go through io::detail::parse_json: linear time, and the depth and
// value-count limits of ApiLimits answer 400 invalid_json before validation.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "api.hpp"
#include "test_util.hpp"

namespace af::server {
namespace {

// {"messages": [{"role":"user","content":"x"}, ...]} with n messages.
std::string many_messages(int n) {
  std::string body = R"({"max_tokens": 1, "messages": [)";
  for (int i = 0; i < n; ++i) {
    if (i) body += ',';
    body += R"({"role":"user","content":"x"})";
  }
  return body + "]}";
}

ApiError error_of(const std::string& body, const ApiLimits& limits) {
  try {
    parse_request(Endpoint::kChatCompletions, body, limits);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return ApiError(0, "");
}

TEST(ServerJsonLimits, ManySmallObjectsParseInLinearTime) {
  // Before: 1.1 MB of small objects took 28 s of CPU in the parser. 100k messages (3 MB) now
  // parse and validate in well under a second.
  ApiLimits limits;
  limits.max_json_elements = 1'000'000;
  const std::string body = many_messages(100'000);
  const auto t0 = std::chrono::steady_clock::now();
  const ApiRequest r = parse_request(Endpoint::kChatCompletions, body, limits);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.messages.size(), 100'000u);
  EXPECT_LT(s, 5.0 * af::test::time_scale()) << body.size() << " bytes";
}

TEST(ServerJsonLimits, ValueCountAndDepthGive400) {
  ApiLimits limits;                                                // default: 2^20 values
  const ApiError many = error_of(many_messages(400'000), limits);  // 1.2M values
  EXPECT_EQ(many.status, 400);
  EXPECT_EQ(many.code, "invalid_json");
  EXPECT_NE(many.message.find("more than 1048576 values"), std::string::npos) << many.message;

  limits.max_json_depth = 4;
  const ApiError deep = error_of(R"({"messages": [{"content": [{"x": 1}]}]})", limits);
  EXPECT_EQ(deep.status, 400);
  EXPECT_EQ(deep.code, "invalid_json");
  EXPECT_NE(deep.message.find("deeper than 4 levels"), std::string::npos) << deep.message;
}

}  // namespace
}  // namespace af::server
