// One model, one file: every family's facts come from its ArchitectureInfo
// (src/models/<family>.cpp) through the registry, and io reads GGUF files of whichever families
// its caller passes, without a table of its own.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>

#include "af/core/error.hpp"
#include "af/io/architecture.hpp"
#include "af/io/model_files.hpp"
#include "af/models/model_files.hpp"
#include "models/registry.hpp"
#include "unit/io_test_util.hpp"

namespace af::models {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using io::test::GgufBuilder;
using io::test::TempDir;

// A GGUF with the hyperparameters every decoder family needs, under `arch`.
GgufBuilder minimal_gguf(const std::string& arch) {
  GgufBuilder b;
  const std::string p = arch + ".";
  b.kv_str("general.architecture", arch)
      .kv_u32(p + "embedding_length", 16)
      .kv_u32(p + "feed_forward_length", 40)
      .kv_u32(p + "block_count", 2)
      .kv_u32(p + "attention.head_count", 4)
      .kv_u32(p + "context_length", 64)
      .kv_f32(p + "attention.layer_norm_rms_epsilon", 1e-6f)
      .f32_tensor("token_embd.weight", {16, 10})
      .f32_tensor("blk.0.ffn_norm.weight", {16});
  return b;
}

io::ModelFiles open_built(const TempDir& dir, const GgufBuilder& b,
                          io::GgufArchitectures known = gguf_architectures()) {
  const fs::path path = dir.path() / "m.gguf";
  io::test::write_file(path, b.build());
  return io::open_model_files(path.string(), known);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Architectures, RegistryNamesEachHfClassOnceWithAFactory) {
  std::set<std::string_view> seen;
  for (const ArchitectureInfo* a : architectures()) {
    ASSERT_NE(a->factory, nullptr);
    ASSERT_FALSE(a->hf_classes.empty());
    for (std::string_view cls : a->hf_classes) {
      EXPECT_TRUE(seen.insert(cls).second) << cls << " is listed twice";
      EXPECT_EQ(find_architecture(cls), a) << cls;
      EXPECT_EQ(find_factory(std::string(cls)), a->factory) << cls;
    }
  }
  EXPECT_EQ(supported_architectures().size(), seen.size());
  EXPECT_EQ(find_architecture("GPT2LMHeadModel"), nullptr);
}

// Each family with a GGUF form is what io finds by its general.architecture, names an HF class
// the same family loads, and maps every tensor name it uses GGUF -> HF -> GGUF unchanged.
TEST(Architectures, EveryGgufFamilyRoundTripsItsArchitectureAndTensorNames) {
  int families = 0;
  for (const ArchitectureInfo* a : architectures()) {
    if (!a->gguf) continue;
    ++families;
    const io::GgufArchitecture* g = a->gguf;
    SCOPED_TRACE(std::string(g->gguf_name));
    EXPECT_EQ(io::find_gguf_architecture(gguf_architectures(), g->gguf_name), g);
    EXPECT_EQ(find_architecture(g->hf_class), a);
    for (const io::TensorName& n : io::shared_global_names()) {
      const std::string gguf = std::string(n.gguf) + ".weight";
      EXPECT_EQ(io::gguf_name_from_hf(io::hf_name_from_gguf(gguf, g), g), gguf);
    }
    // The family's own names, then the shared ones it does not rename.
    std::vector<io::TensorName> names(g->block_names.begin(), g->block_names.end());
    for (const io::TensorName& n : io::shared_block_names()) {
      const bool renamed = std::any_of(
          g->block_names.begin(), g->block_names.end(),
          [&](const io::TensorName& own) { return own.gguf == n.gguf || own.hf == n.hf; });
      if (!renamed) names.push_back(n);
    }
    for (const io::TensorName& n : names) {
      for (const char* suffix : {".weight", ".bias"}) {
        const std::string gguf = "blk.7." + std::string(n.gguf) + suffix;
        const std::string hf = io::hf_name_from_gguf(gguf, g);
        EXPECT_TRUE(hf.starts_with("model.layers.7.")) << gguf << " -> " << hf;
        EXPECT_EQ(io::gguf_name_from_hf(hf, g), gguf) << hf;
        const std::string hf_in = "model.layers.7." + std::string(n.hf) + suffix;
        EXPECT_EQ(io::hf_name_from_gguf(io::gguf_name_from_hf(hf_in, g), g), hf_in);
      }
    }
  }
  EXPECT_EQ(families, static_cast<int>(gguf_architectures().size()));
  EXPECT_GE(families, 9);
}

TEST(Architectures, FamilyTensorNamesComeBeforeTheSharedTable) {
  const io::GgufArchitecture* gemma = io::find_gguf_architecture(gguf_architectures(), "gemma3");
  const io::GgufArchitecture* llama = io::find_gguf_architecture(gguf_architectures(), "llama");
  ASSERT_NE(gemma, nullptr);
  ASSERT_NE(llama, nullptr);
  EXPECT_EQ(io::hf_name_from_gguf("blk.2.ffn_norm.weight", gemma),
            "model.layers.2.pre_feedforward_layernorm.weight");
  EXPECT_EQ(io::hf_name_from_gguf("blk.2.ffn_norm.weight", llama),
            "model.layers.2.post_attention_layernorm.weight");
  EXPECT_EQ(io::gguf_name_from_hf("model.layers.2.post_attention_layernorm.weight", gemma),
            "blk.2.post_attention_norm.weight");
  // The weights of a GGUF file read through its family's names.
  TempDir dir;
  const io::ModelFiles m = open_built(dir, minimal_gguf("gemma3"));
  EXPECT_EQ(m.gguf_architecture, gemma);
  EXPECT_TRUE(m.weights->has("model.layers.0.pre_feedforward_layernorm.weight"));
  EXPECT_FALSE(m.weights->has("model.layers.0.post_attention_layernorm.weight"));
}

// The "supported" list of the unsupported-GGUF error is the registry's, in its order.
TEST(Architectures, UnsupportedGgufErrorListsTheRegisteredFamilies) {
  std::string known;
  for (const ArchitectureInfo* a : architectures()) {
    if (!a->gguf) continue;
    known += (known.empty() ? "" : ", ") + std::string(a->gguf->gguf_name);
  }
  EXPECT_EQ(known, "llama, qwen2, qwen3, minicpm, phi3, gemma2, gemma3, qwen2moe, qwen3moe");
  TempDir dir;
  const std::string msg = error_of([&] { open_built(dir, minimal_gguf("nonesuch")); });
  EXPECT_NE(msg.find("GGUF architecture 'nonesuch' is not supported (" + known + ")"),
            std::string::npos)
      << msg;
}

// A family io has never heard of, passed by the caller, is read with its own class, rope layout,
// metadata keys and tensor names: io holds no per-family table, and passing it changes nothing
// for other callers (the registry's list does not gain it).
void toy_config(const io::GgufMetadata& md, json& c) {
  c["toy_scale"] = md.get_float(md.arch("toy_scale"));
}
constexpr io::TensorName kToyNames[] = {{"ffn_norm", "toy_norm"}};
constexpr io::GgufArchitecture kToy{.gguf_name = "toy",
                                    .hf_class = "ToyForCausalLM",
                                    .rope_layout = RopeLayout::kInterleaved,
                                    .block_names = kToyNames,
                                    .config_from_gguf = toy_config};
constexpr const io::GgufArchitecture* kToyOnly[] = {&kToy};

TEST(Architectures, IoReadsTheFamiliesItsCallerPasses) {
  TempDir dir;
  GgufBuilder b = minimal_gguf("toy");
  b.kv_f32("toy.toy_scale", 0.25f);
  const io::ModelFiles m = open_built(dir, b, kToyOnly);
  EXPECT_EQ(m.gguf_architecture, &kToy);
  EXPECT_EQ(m.config["architectures"], json::array({"ToyForCausalLM"}));
  EXPECT_EQ(m.config["toy_scale"].get<double>(), 0.25);
  EXPECT_EQ(m.config["hidden_size"], 16);
  EXPECT_EQ(m.qk_rope_layout, RopeLayout::kInterleaved);
  EXPECT_TRUE(m.weights->has("model.layers.0.toy_norm.weight"));
  // The registry's families do not include it, before or after.
  EXPECT_EQ(io::find_gguf_architecture(gguf_architectures(), "toy"), nullptr);
  EXPECT_NE(error_of([&] { open_built(dir, b); }).find("GGUF architecture 'toy' is not supported"),
            std::string::npos);
  // Nor does the toy list include the registry's.
  EXPECT_NE(error_of([&] {
              open_built(dir, minimal_gguf("llama"), kToyOnly);
            }).find("GGUF architecture 'llama' is not supported (toy)"),
            std::string::npos);
}

// io knows no family unless told: with none passed every text GGUF is refused with a message
// that says so, and an mmproj (clip) still opens, as it needs no family.
TEST(Architectures, IoWithNoFamiliesRefusesTextGgufAndSaysWhy) {
  TempDir dir;
  const std::string msg = error_of([&] { open_built(dir, minimal_gguf("llama"), {}); });
  EXPECT_NE(msg.find("GGUF architecture 'llama' is not supported (none given: pass "
                     "models::gguf_architectures())"),
            std::string::npos)
      << msg;
  GgufBuilder clip;
  clip.kv_str("general.architecture", "clip").f32_tensor("v.patch_embd.weight", {4, 4});
  const io::ModelFiles m = open_built(dir, clip, {});
  EXPECT_EQ(m.config["model_type"], "clip");
  EXPECT_EQ(m.gguf_architecture, nullptr);
}

// The convenience in the models layer is io with the registry's list.
TEST(Architectures, ModelsOpenModelFilesPassesTheRegistry) {
  TempDir dir;
  const fs::path path = dir.path() / "m.gguf";
  io::test::write_file(path, minimal_gguf("qwen3").build());
  EXPECT_EQ(open_model_files(path.string()).gguf_architecture,
            io::find_gguf_architecture(gguf_architectures(), "qwen3"));
  EXPECT_EQ(gguf_architectures().data(), gguf_architectures().data());  // built once
}

}  // namespace
}  // namespace af::models
