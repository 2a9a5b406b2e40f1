// af::convert::write_gguf (the library behind af-cli quantize) asks the registry which families
// convert and lets each write its own keys (models' GgufArchitecture::gguf_from_config).
#include <gtest/gtest.h>

#include <string>

#include "af/convert/gguf_convert.hpp"
#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "models/registry.hpp"
#include "unit/io_test_util.hpp"

namespace af::convert {
namespace {

namespace fs = std::filesystem;
using io::test::TempDir;

constexpr GgufTarget kF32{"f32", DType::F32, 0};

// An HF folder whose config names `cls`, with an empty model.safetensors.
fs::path hf_folder(const TempDir& dir, const std::string& cls) {
  const fs::path folder = dir.path() / cls;
  fs::create_directories(folder);
  io::test::write_file(folder / "config.json",
                       nlohmann::json{{"architectures", {cls}}, {"hidden_size", 16}}.dump());
  io::test::write_file(folder / "model.safetensors",
                       io::test::make_safetensors(nlohmann::json::object(), {}));
  return folder;
}

std::string error_of(const fs::path& folder, const fs::path& out) {
  try {
    write_gguf(folder.string(), out.string(), kF32);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The classes in the refusal are the registry's families with an HF -> GGUF conversion.
TEST(GgufConvert, RefusalListsTheFamiliesThatConvert) {
  std::string convertible;
  for (const models::ArchitectureInfo* a : models::architectures()) {
    if (!a->gguf || !a->gguf->gguf_from_config) continue;
    for (std::string_view cls : a->hf_classes)
      convertible += (convertible.empty() ? "" : ", ") + std::string(cls);
  }
  EXPECT_NE(convertible.find("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"),
            std::string::npos)
      << convertible;
  TempDir dir;
  const fs::path out = dir.path() / "out.gguf";
  for (const char* cls : {"GPT2LMHeadModel", "MixtralForCausalLM", "Gemma3ForCausalLM"}) {
    const std::string msg = error_of(hf_folder(dir, cls), out);
    EXPECT_NE(
        msg.find(std::string("'") + cls + "' cannot be converted to GGUF (" + convertible + ")"),
        std::string::npos)
        << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out));
}

// A Llama folder converts with the family's own key (llama.vocab_size, written by llama.cpp's
// hook in src/models/llama.cpp) beside the shared ones.
TEST(GgufConvert, FamilyWritesItsOwnKeys) {
  const fs::path hf = io::test::testdata_dir() / "models/stories260K-hf";
  const fs::path vocab = io::test::testdata_dir() / "models/stories260K/stories260K.gguf";
  if (!fs::exists(hf) || !fs::exists(vocab)) GTEST_SKIP() << "no test data at " << hf;
  TempDir dir;
  const fs::path out = dir.path() / "stories.gguf";
  GgufWriteOptions options;
  options.threads = 1;
  options.vocab_from = vocab.string();
  const GgufWriteSummary summary = write_gguf(hf.string(), out.string(), kF32, options);
  EXPECT_EQ(summary.tensors, 47u);  // the HF folder's tensors (embeddings tied), GGUF-named
  const io::GgufFile g = io::GgufFile::open(out.string());
  EXPECT_EQ(g.find("general.architecture")->as_string("a"), "llama");
  ASSERT_NE(g.find("llama.vocab_size"), nullptr);
  EXPECT_EQ(g.find("llama.vocab_size")->as_int("v"), 512);
  EXPECT_EQ(g.find("llama.block_count")->as_int("b"), 5);
  EXPECT_TRUE(g.has_tensor("blk.4.ffn_down.weight"));
}

}  // namespace
}  // namespace af::convert
