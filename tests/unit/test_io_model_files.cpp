#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "af/core/error.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/model_files.hpp"
#include "unit/io_test_util.hpp"

namespace af::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::GgufBuilder;
using test::TempDir;

// Runs `f`, expecting af::Error with `code` and a message containing every `parts`.
template <class F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error, expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' in " << msg;
  }
}

fs::path stories_gguf() { return test::testdata_dir() / "models/stories260K/stories260K.gguf"; }
fs::path stories_hf() { return test::testdata_dir() / "models/stories260K-hf"; }

#define REQUIRE_TESTDATA(path) \
  if (!fs::exists(path)) GTEST_SKIP() << "no test data at " << (path)

TEST(IoModelFiles, NameTable) {
  const std::pair<const char*, const char*> pairs[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight"},
      {"blk.12.attn_q.bias", "model.layers.12.self_attn.q_proj.bias"},
      {"blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"},
      {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
      {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight"},
      {"blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"},
      {"blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"},
  };
  for (const auto& [gguf, hf] : pairs) {
    EXPECT_EQ(hf_name_from_gguf(gguf), hf);
    EXPECT_EQ(gguf_name_from_hf(hf), gguf);
  }
  // Names outside the table stay as they are.
  for (const char* name :
       {"rope_freqs.weight", "blk.x.attn_q.weight", "blk..attn_q.weight", "blk.0.attn_q.scale",
        "blk.0.unknown.weight", "output", "blk.0.weight", ""}) {
    EXPECT_EQ(hf_name_from_gguf(name), name);
    EXPECT_EQ(gguf_name_from_hf(name), name);
  }
}

TEST(IoModelFiles, HfFolder) {
  REQUIRE_TESTDATA(stories_hf());
  for (fs::path p : {stories_hf(), stories_hf() / "model.safetensors"}) {
    ModelFiles m = models::open_model_files(p.string());
    EXPECT_EQ(m.format, "safetensors");
    EXPECT_EQ(m.qk_rope_layout, RopeLayout::kHalf);
    EXPECT_EQ(m.gguf, nullptr);
    EXPECT_EQ(m.config["hidden_size"], 64);
    EXPECT_EQ(m.config["architectures"][0], "LlamaForCausalLM");
    std::vector<std::string> names = m.weights->names();
    EXPECT_EQ(names.size(), 47u);
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
    EXPECT_TRUE(m.weights->has("model.layers.4.mlp.down_proj.weight"));
    EXPECT_FALSE(m.weights->has("lm_head.weight"));
    EXPECT_EQ(m.weights->get("model.norm.weight").shape(), (Shape{64}));
    expect_error([&] { m.weights->get("lm_head.weight"); }, ErrorCode::kFormat,
                 {"lm_head.weight", "model.safetensors"});
  }
}

TEST(IoModelFiles, GgufConfigFromStories) {
  REQUIRE_TESTDATA(stories_gguf());
  ModelFiles m = models::open_model_files(stories_gguf().string());
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.qk_rope_layout, RopeLayout::kInterleaved);
  ASSERT_NE(m.gguf, nullptr);
  EXPECT_EQ(m.gguf->find("tokenizer.ggml.tokens")->as_array("t").size(), 512u);
  const json& c = m.config;
  EXPECT_EQ(c["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(c["model_type"], "llama");
  EXPECT_EQ(c["hidden_size"], 64);
  EXPECT_EQ(c["intermediate_size"], 172);
  EXPECT_EQ(c["num_hidden_layers"], 5);
  EXPECT_EQ(c["num_attention_heads"], 8);
  EXPECT_EQ(c["num_key_value_heads"], 4);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-5);  // shortest float32 decimal, like config.json
  EXPECT_EQ(c["rope_theta"].get<double>(), 10000.0);
  EXPECT_EQ(c["max_position_embeddings"], 128);  // what llama2c->gguf wrote
  EXPECT_EQ(c["vocab_size"], 512);
  EXPECT_EQ(c["tie_word_embeddings"], false);  // output.weight is stored
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
  EXPECT_TRUE(c["rope_scaling"].is_null());
  EXPECT_FALSE(c.contains("head_dim"));  // no attention.key_length in this file
  EXPECT_EQ(m.weights->names().size(), 48u);
  EXPECT_TRUE(m.weights->has("lm_head.weight"));
  EXPECT_TRUE(m.weights->has("model.layers.4.self_attn.o_proj.weight"));
  EXPECT_FALSE(m.weights->has("blk.0.attn_q.weight"));
  expect_error([&] { m.weights->get("model.layers.9.mlp.up_proj.weight"); }, ErrorCode::kFormat,
               {"model.layers.9.mlp.up_proj.weight", "blk.9.ffn_up.weight", "stories260K.gguf"});
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// The GGUF and the HF folder hold the same model: through the name table every HF tensor
// matches its GGUF twin byte for byte, except q/k, whose rows llama.cpp's layout interleaves.
TEST(IoModelFiles, GgufAndHfHoldTheSameWeights) {
  REQUIRE_TESTDATA(stories_gguf());
  REQUIRE_TESTDATA(stories_hf());
  ModelFiles g = models::open_model_files(stories_gguf().string());
  ModelFiles h = models::open_model_files(stories_hf().string());
  int compared = 0;
  for (const std::string& name : h.weights->names()) {
    ASSERT_TRUE(g.weights->has(name)) << name;
    Tensor hw = h.weights->get(name);
    Tensor gw = g.weights->get(name);
    ASSERT_EQ(hw.shape(), gw.shape()) << name;
    bool is_qk =
        name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos;
    if (!is_qk) {
      EXPECT_TRUE(same_bytes(hw, gw)) << name;
      ++compared;
      continue;
    }
    // HF row h*hd + j*hd/2 + i  ==  GGUF row h*hd + 2*i + j  (rotate-half vs interleaved pairs).
    const int64_t hd = 8, cols = hw.shape()[1], heads = hw.shape()[0] / hd;
    for (int64_t head = 0; head < heads; ++head)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t i = 0; i < hd / 2; ++i) {
          const float* hr = hw.as<float>() + (head * hd + j * hd / 2 + i) * cols;
          const float* gr = gw.as<float>() + (head * hd + 2 * i + j) * cols;
          ASSERT_EQ(std::memcmp(hr, gr, static_cast<size_t>(cols) * 4), 0) << name;
        }
  }
  EXPECT_EQ(compared, 37);
  EXPECT_TRUE(
      same_bytes(g.weights->get("lm_head.weight"), h.weights->get("model.embed_tokens.weight")));
}

// A GGUF for `arch` with the hyperparameters every architecture needs.
GgufBuilder arch_builder(const std::string& arch) {
  GgufBuilder b;
  const std::string p = arch + ".";
  b.kv_str("general.architecture", arch)
      .kv_u32(p + "embedding_length", 16)
      .kv_u32(p + "feed_forward_length", 40)
      .kv_u32(p + "block_count", 4)
      .kv_u32(p + "attention.head_count", 4)
      .kv_u32(p + "context_length", 2048)
      .kv_f32(p + "attention.layer_norm_rms_epsilon", 1e-6f);
  return b;
}

ModelFiles open_built(const TempDir& dir, const GgufBuilder& b,
                      const std::string& name = "m.gguf") {
  fs::path path = dir.path() / name;
  test::write_file(path, b.build());
  return models::open_model_files(path.string());
}

TEST(IoModelFiles, GgufQwen2Config) {
  TempDir dir;
  GgufBuilder b = arch_builder("qwen2");
  b.kv_f32("qwen2.rope.freq_base", 1000000.0f)
      .kv_u32("qwen2.attention.key_length", 4)
      .kv_str("qwen2.rope.scaling.type", "linear")
      .kv_f32("qwen2.rope.scaling.factor", 4.0f)
      .kv_u32("tokenizer.ggml.eos_token_id", 7)
      .f32_tensor("token_embd.weight", {16, 10})
      .f32_tensor("blk.0.attn_q.bias", {16})
      .f32_tensor("rope_freqs.weight", {2});
  ModelFiles m = open_built(dir, b);
  EXPECT_EQ(m.qk_rope_layout, RopeLayout::kHalf);
  const json& c = m.config;
  EXPECT_EQ(c["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(c["model_type"], "qwen2");
  EXPECT_EQ(c["num_key_value_heads"], 4);  // defaults to the head count
  EXPECT_EQ(c["head_dim"], 4);
  EXPECT_EQ(c["rope_theta"].get<double>(), 1e6);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-6);
  EXPECT_EQ(c["vocab_size"], 10);
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["rope_scaling"]["type"], "linear");
  EXPECT_EQ(c["rope_scaling"]["factor"].get<double>(), 4.0);
  EXPECT_EQ(c["eos_token_id"], 7);
  EXPECT_FALSE(c.contains("bos_token_id"));
  EXPECT_TRUE(m.weights->has("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(m.weights->has("rope_freqs.weight"));  // unmapped: keeps its GGUF name
}

TEST(IoModelFiles, GgufNoneSpecialIdsAreAbsent) {
  // llama.cpp writes 0xFFFFFFFF for "no such token"; before, it became eos_token_id 4294967295
  // and HfConfig::eos_token_ids refused the model ("bad eos_token_id entry").
  TempDir dir;
  GgufBuilder b = arch_builder("llama");
  b.kv_u32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu)
      .kv_u32("tokenizer.ggml.eos_token_id", 0xFFFFFFFFu)
      .kv_i32("tokenizer.ggml.eot_token_id", -1)
      .kv_u64("tokenizer.ggml.eom_token_id", ~uint64_t{0})
      .f32_tensor("token_embd.weight", {16, 10});
  ModelFiles m = open_built(dir, b);
  EXPECT_FALSE(m.config.contains("bos_token_id"));
  EXPECT_FALSE(m.config.contains("eos_token_id"));
  EXPECT_TRUE(HfConfig(m.config, "m").eos_token_ids().empty());

  // Ids past the vocabulary are ignored too (llama.cpp warns and keeps its default); valid
  // ones stay.
  GgufBuilder mixed = arch_builder("llama");
  mixed.kv_u32("tokenizer.ggml.bos_token_id", 1)
      .kv_u32("tokenizer.ggml.eos_token_id", 0xFFFFFFFFu)
      .kv_u32("tokenizer.ggml.eot_token_id", 9)
      .kv_u32("tokenizer.ggml.eom_token_id", 10)
      .f32_tensor("token_embd.weight", {16, 10});
  ModelFiles n = open_built(dir, mixed, "n.gguf");
  EXPECT_EQ(n.config["bos_token_id"], 1);
  EXPECT_EQ(n.config["eos_token_id"], 9);
  EXPECT_EQ(HfConfig(n.config, "n").eos_token_ids(), std::vector<int32_t>{9});
}

TEST(IoModelFiles, GgufMiniCpmConfig) {
  TempDir dir;
  GgufBuilder b = arch_builder("minicpm");
  // MiniCPM-2B: scale_emb 12, scale_depth 1.4, dim_model_base 256 (hidden 2304 -> logit 9).
  b.kv_f32("minicpm.embedding_scale", 12.0f)
      .kv_f32("minicpm.residual_scale", static_cast<float>(1.4 / std::sqrt(4.0)))
      .kv_f32("minicpm.logit_scale", 16.0f / 256.0f)
      .kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  ModelFiles m = open_built(dir, b);
  EXPECT_EQ(m.qk_rope_layout, RopeLayout::kInterleaved);
  const json& c = m.config;
  EXPECT_EQ(c["architectures"][0], "MiniCPMForCausalLM");
  EXPECT_EQ(c["scale_emb"].get<double>(), 12.0);
  EXPECT_NEAR(c["scale_depth"].get<double>(), 1.4, 1e-6);
  EXPECT_EQ(c["dim_model_base"], 256);
  EXPECT_EQ(c["vocab_size"], 3);  // no token_embd.weight: from the vocabulary
  EXPECT_EQ(c["rope_theta"].get<double>(), 10000.0);

  GgufBuilder missing = arch_builder("minicpm");
  missing.kv_str_array("tokenizer.ggml.tokens", {"a"});
  expect_error([&] { open_built(dir, missing, "x.gguf"); }, ErrorCode::kFormat,
               {"minicpm.embedding_scale", "x.gguf"});
}

TEST(IoModelFiles, GgufConfigErrors) {
  TempDir dir;
  expect_error([&] { open_built(dir, arch_builder("falcon")); }, ErrorCode::kUnsupported,
               {"'falcon'", "m.gguf"});
  GgufBuilder no_arch;
  expect_error([&] { open_built(dir, no_arch); }, ErrorCode::kFormat,
               {"general.architecture", "m.gguf"});
  GgufBuilder no_layers;
  no_layers.kv_str("general.architecture", "llama").kv_u32("llama.embedding_length", 8);
  expect_error([&] { open_built(dir, no_layers); }, ErrorCode::kFormat,
               {"llama.block_count", "missing"});
  GgufBuilder wrong_type = arch_builder("llama");
  wrong_type.kv_str("llama.rope.freq_base", "big");
  expect_error([&] { open_built(dir, wrong_type); }, ErrorCode::kFormat,
               {"llama.rope.freq_base", "m.gguf", "string"});
  GgufBuilder no_vocab = arch_builder("llama");
  expect_error([&] { open_built(dir, no_vocab); }, ErrorCode::kFormat, {"vocabulary"});
  // An unmapped tensor colliding with a mapped name.
  GgufBuilder clash = arch_builder("llama");
  clash.f32_tensor("token_embd.weight", {4, 4}).f32_tensor("model.embed_tokens.weight", {4});
  expect_error([&] { open_built(dir, clash); }, ErrorCode::kFormat,
               {"model.embed_tokens.weight", "both map"});
}

// ---- sharded safetensors ----

std::vector<uint8_t> shard_bytes(const std::string& tensor, float value) {
  json h = {{tensor, {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  std::vector<uint8_t> data(8);
  float v[2] = {value, value};
  std::memcpy(data.data(), v, 8);
  return test::make_safetensors(h, data);
}

void write_sharded(const TempDir& dir, const json& weight_map) {
  test::write_file(dir.path() / "config.json", std::string(R"({"hidden_size": 2})"));
  test::write_file(dir.path() / "model-00001-of-00002.safetensors", shard_bytes("a.weight", 1.0f));
  test::write_file(dir.path() / "model-00002-of-00002.safetensors", shard_bytes("b.weight", 2.0f));
  json index = {{"metadata", {{"total_size", 16}}}, {"weight_map", weight_map}};
  test::write_file(dir.path() / "model.safetensors.index.json", index.dump());
}

TEST(IoModelFiles, ShardedFolder) {
  TempDir dir;
  write_sharded(dir, {{"a.weight", "model-00001-of-00002.safetensors"},
                      {"b.weight", "model-00002-of-00002.safetensors"}});
  ModelFiles m = models::open_model_files(dir.path().string());
  EXPECT_EQ(m.format, "safetensors");
  EXPECT_EQ(m.config["hidden_size"], 2);
  EXPECT_EQ(m.weights->names(), (std::vector<std::string>{"a.weight", "b.weight"}));
  EXPECT_FLOAT_EQ(m.weights->get("a.weight").as<float>()[1], 1.0f);
  EXPECT_FLOAT_EQ(m.weights->get("b.weight").as<float>()[0], 2.0f);
  EXPECT_NE(m.weights->origin().find("model.safetensors.index.json"), std::string::npos);
}

TEST(IoModelFiles, ShardOutsideTheFolder) {
  for (const char* shard : {"../model-00001-of-00002.safetensors", "/etc/passwd",
                            "sub/model.safetensors", "..", "", "a\\b.safetensors"}) {
    TempDir dir;
    write_sharded(dir, {{"a.weight", "model-00001-of-00002.safetensors"}, {"b.weight", shard}});
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"'b.weight'", "not a plain file name", "model.safetensors.index.json"});
  }
}

TEST(IoModelFiles, ShardProblems) {
  {
    TempDir dir;
    write_sharded(dir, {{"a.weight", "model-00001-of-00002.safetensors"},
                        {"b.weight", "model-00003-of-00002.safetensors"}});
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kIo,
                 {"model-00003-of-00002.safetensors", "does not exist"});
  }
  {
    TempDir dir;
    write_sharded(dir, {{"a.weight", "model-00001-of-00002.safetensors"},
                        {"b.weight", "model-00001-of-00002.safetensors"}});
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"'b.weight'", "not stored there"});
  }
  {
    TempDir dir;
    write_sharded(dir, json::object());
    test::write_file(dir.path() / "model.safetensors.index.json", std::string(R"({"x": 1})"));
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"weight_map"});
    test::write_file(dir.path() / "model.safetensors.index.json",
                     std::string(R"({"weight_map": {"a.weight": 3}})"));
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"'a.weight'", "not a string"});
    test::write_file(dir.path() / "model.safetensors.index.json",
                     std::string(R"({"weight_map": {"a.weight": "x", "a.weight": "y"}})"));
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"duplicate", "a.weight"});
  }
  {
    // A corrupt shard reports the shard's own path.
    TempDir dir;
    write_sharded(dir, {{"a.weight", "model-00001-of-00002.safetensors"}});
    test::write_file(dir.path() / "model-00001-of-00002.safetensors", std::string("garbage"));
    expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kFormat,
                 {"model-00001-of-00002.safetensors"});
  }
}

TEST(IoModelFiles, PathProblems) {
  TempDir dir;
  expect_error([&] { models::open_model_files((dir.path() / "nothing").string()); }, ErrorCode::kIo,
               {"nothing"});
  expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kIo,
               {"config.json"});
  test::write_file(dir.path() / "config.json", std::string("{}"));
  expect_error([&] { models::open_model_files(dir.path().string()); }, ErrorCode::kIo,
               {"model.safetensors"});
  fs::create_directories(dir.path() / "lonely");
  test::write_file(dir.path() / "lonely" / "w.safetensors", shard_bytes("a", 1.0f));
  expect_error(
      [&] { models::open_model_files((dir.path() / "lonely" / "w.safetensors").string()); },
      ErrorCode::kIo, {"config.json"});
  test::write_file(dir.path() / "model.bin", std::string("x"));
  expect_error([&] { models::open_model_files((dir.path() / "model.bin").string()); },
               ErrorCode::kFormat, {"model.bin", "unrecognised model format"});
}

TEST(IoModelFiles, ReadJsonFile) {
  TempDir dir;
  test::write_file(dir.path() / "ok.json", std::string(R"({"a": [1, 2]})"));
  EXPECT_EQ(read_json_file((dir.path() / "ok.json").string())["a"][1], 2);
  test::write_file(dir.path() / "bad.json", std::string("{\"a\": [1, 2}"));
  expect_error([&] { read_json_file((dir.path() / "bad.json").string()); }, ErrorCode::kFormat,
               {"bad.json", "invalid JSON"});
  expect_error([&] { read_json_file((dir.path() / "missing.json").string()); }, ErrorCode::kIo,
               {"missing.json"});
}

}  // namespace
}  // namespace af::io
