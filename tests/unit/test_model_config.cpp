// Config sizes read by the decoder models: zero, negative or overflowing values give an error
// that names the field, before any weight is read.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "af/io/gguf_writer.hpp"
#include "af/models/causal_lm.hpp"
#include "unit/io_test_util.hpp"

namespace af::models {
namespace {

using json = nlohmann::json;

json llama_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 32},
              {"hidden_size", 16},
              {"intermediate_size", 40},
              {"num_hidden_layers", 1},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2}};
}

// Loads a folder holding `config` and an empty model.safetensors; expects af::Error(kFormat)
// from the config with every `parts` in its message.
void expect_config_error(const json& config, std::initializer_list<std::string> parts) {
  io::test::TempDir dir;
  io::test::write_file(dir.path() / "config.json", config.dump());
  io::test::write_file(dir.path() / "model.safetensors",
                       io::test::make_safetensors(std::string("{}"), std::vector<uint8_t>{}));
  try {
    load(dir.path().string());
    ADD_FAILURE() << "loaded " << config.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' in " << msg;
  }
}

TEST(ModelConfig, ZeroHeadDimNamesTheField) {
  // Before: "hidden_size 16 is not divisible by num_attention_heads 4", which it is.
  json c = llama_config();
  c["head_dim"] = 0;
  expect_config_error(c, {"\"head_dim\"", "got 0"});
  c["head_dim"] = -8;
  expect_config_error(c, {"\"head_dim\"", "got -8"});
  c["head_dim"] = int64_t{1} << 40;
  expect_config_error(c, {"\"head_dim\"", "got 1099511627776"});
}

TEST(ModelConfig, BadSizesNameTheField) {
  for (const char* key :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "max_position_embeddings"}) {
    json c = llama_config();
    c[key] = 0;
    expect_config_error(c, {std::string("\"") + key + "\"", "got 0"});
    c[key] = -1;
    expect_config_error(c, {std::string("\"") + key + "\"", "got -1"});
    c[key] = int64_t{1} << 31;
    expect_config_error(c, {std::string("\"") + key + "\"", "below 2^31"});
  }
  json c = llama_config();
  c["hidden_size"] = 18;
  expect_config_error(c, {"hidden_size 18", "not divisible by num_attention_heads 4"});
  c = llama_config();
  c["num_key_value_heads"] = 3;
  expect_config_error(c, {"num_attention_heads 4", "num_key_value_heads 3"});
}

TEST(ModelConfig, GgufWithNoEosTokenLoads) {
  // A converter that knows no EOS writes tokenizer.ggml.eos_token_id = 0xFFFFFFFF (llama.cpp's
  // "none"). Before, the model refused to load ("bad eos_token_id entry 4294967295").
  const auto src = io::test::testdata_dir() / "models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(src)) GTEST_SKIP() << "no test data at " << src;
  const io::GgufFile in = io::GgufFile::open(src.string());
  io::GgufWriter w;
  for (const std::string& key : in.metadata_keys()) w.set(key, *in.find(key));
  w.set_u32("tokenizer.ggml.eos_token_id", 0xFFFFFFFFu);
  w.set_u32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu);
  for (const io::GgufTensorInfo& t : in.tensors()) w.add_tensor(t.name, in.tensor(t.name));
  io::test::TempDir dir;
  const std::string path = (dir.path() / "no_eos.gguf").string();
  w.write(path);

  std::unique_ptr<CausalLM> model = load(path);
  EXPECT_TRUE(model->info().eos_token_ids.empty());
  EXPECT_EQ(model->info().bos_token_id, -1);
}

}  // namespace
}  // namespace af::models
