// Hardening issue 21, follow-up: generation_config.json and tokenizer_config.json are parsed with
// the capped, linear JSON parser (io::detail::parse_json), so a hostile file in a model folder
// gives a clear error naming it instead of deep recursion, a long parse or a large allocation.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "runtime/end_tokens.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

namespace af {
namespace {

namespace fs = std::filesystem;

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// `count` small values in one array: far past the config files' cap of 2^20 values.
std::string many_values(size_t count) {
  std::string s = "{\"eos_token_id\": 2, \"chat_template\": \"x\", \"junk\": [";
  s.reserve(s.size() + 2 * count + 2);
  for (size_t i = 0; i < count; ++i) s += i ? ",0" : "0";
  return s + "]}";
}

void write(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Runs `f`, which must throw af::Error(kFormat); returns its message.
std::string format_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no af::Error";
  return {};
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ConfigJsonCaps, TokenizerConfigTooDeepOrTooManyValues) {
  test::TempFolder dir("af_cfg_caps");
  const fs::path config = dir / "tokenizer_config.json";
  write(config, "{\"chat_template\": \"x\", \"junk\": " + nested(100000) + "}");
  std::string msg = format_error([&] { tok::find_chat_template((dir / "").string()); });
  EXPECT_TRUE(has(msg, "tokenizer_config.json")) << msg;
  EXPECT_TRUE(has(msg, "nesting deeper than 64")) << msg;

  write(config, many_values(size_t{3} << 20));
  const auto start = std::chrono::steady_clock::now();
  msg = format_error([&] { tok::find_chat_template(config.string()); });
  EXPECT_TRUE(has(msg, "tokenizer_config.json")) << msg;
  EXPECT_TRUE(has(msg, "more than 1048576 values")) << msg;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  // Still accepted: an ordinary config with many added tokens.
  write(config, many_values(100000));
  EXPECT_EQ(tok::find_chat_template(config.string()), "x");
}

class GenerationConfigCaps : public ::testing::Test {
 protected:
  void SetUp() override {
    AF_REQUIRE_TESTDATA(src_);
    for (const char* name : {"config.json", "tokenizer.json", "model.safetensors"})
      fs::copy_file(src_ / name, dir_ / name);
  }
  std::vector<int32_t> end_tokens() {
    const auto model = models::load((dir_ / "").string());
    return runtime::default_end_tokens(*model, nullptr);
  }
  const fs::path src_ = fs::path(test::testdata_dir()) / "models/stories260K-hf";
  test::TempFolder dir_{"af_gen_cfg"};
};

TEST_F(GenerationConfigCaps, ReadsEndTokens) {
  write(dir_ / "generation_config.json", R"({"eos_token_id": [2, 7]})");
  const std::vector<int32_t> ids = end_tokens();
  EXPECT_NE(std::find(ids.begin(), ids.end(), 7), ids.end());
}

TEST_F(GenerationConfigCaps, TooDeepIsAnErrorNamingTheFile) {
  write(dir_ / "generation_config.json", "{\"eos_token_id\": 2, \"x\": " + nested(100000) + "}");
  const std::string msg = format_error([&] { end_tokens(); });
  EXPECT_TRUE(has(msg, "generation_config.json")) << msg;
  EXPECT_TRUE(has(msg, "nesting deeper than 64")) << msg;
}

TEST_F(GenerationConfigCaps, TooManyValuesIsAnErrorNamingTheFile) {
  write(dir_ / "generation_config.json", many_values(size_t{3} << 20));
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = format_error([&] { end_tokens(); });
  EXPECT_TRUE(has(msg, "generation_config.json")) << msg;
  EXPECT_TRUE(has(msg, "more than 1048576 values")) << msg;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(GenerationConfigCaps, InvalidJsonIsAnErrorNamingTheFile) {
  write(dir_ / "generation_config.json", "{\"eos_token_id\": [2,");
  const std::string msg = format_error([&] { end_tokens(); });
  EXPECT_TRUE(has(msg, "generation_config.json")) << msg;
  EXPECT_TRUE(has(msg, "invalid JSON")) << msg;
}

}  // namespace
}  // namespace af
