#pragma once
// A stand-in image encoder for the runtime side of LLaVA: image k (a 2x2 picture of gray level
// 40 * k) encodes to features_<k>.bin of a fixture, the rows transformers' get_image_features
// computed (tools/make_llava_runtime_fixture.py). Counts its encode calls.
#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/models/multimodal.hpp"
#include "test_util.hpp"

namespace af::test {

inline std::string llava_fixture(const std::string& name = "llava_rt") {
  return fixtures_dir() + "/models/" + name;
}

inline nlohmann::json llava_reference(const std::string& name = "llava_rt") {
  std::ifstream in(llava_fixture(name) + "/llava_reference.json");
  return nlohmann::json::parse(in);
}

inline modalities::Image test_image(int k) {
  return modalities::Image(2, 2, std::vector<uint8_t>(12, static_cast<uint8_t>(40 * k)));
}

class FixtureEncoder final : public models::ImageEncoder {
 public:
  FixtureEncoder(std::string dir, int64_t tokens, int64_t hidden,
                 std::shared_ptr<std::atomic<int>> calls)
      : dir_(std::move(dir)),
        tokens_(tokens),
        hidden_(hidden),
        calls_(std::move(calls)),
        processor_(modalities::CLIPImageProcessor::defaults()) {}
  const modalities::ImageProcessor& processor() const override { return processor_; }
  int64_t num_image_tokens(const modalities::Image&) const override { return tokens_; }
  int64_t output_hidden() const override { return hidden_; }
  models::ImageFeatures encode(const modalities::Image& image) override {
    ++*calls_;
    const int k = image.rgb()[0] / 40;
    models::ImageFeatures f{
        tokens_, hidden_, read_f32(dir_ + "/features_" + std::to_string(k) + ".bin"), {}};
    EXPECT_EQ(f.rows.size(), static_cast<size_t>(tokens_ * hidden_));
    return f;
  }

 private:
  std::string dir_;
  int64_t tokens_, hidden_;
  std::shared_ptr<std::atomic<int>> calls_;
  modalities::CLIPImageProcessor processor_;
};

// Loads a llava_rt fixture with the stand-in encoder; `calls` counts its encode calls.
inline std::unique_ptr<models::MultimodalLM> load_llava(
    const std::string& name = "llava_rt", std::shared_ptr<std::atomic<int>> calls = nullptr,
    int64_t context = 0, int64_t hidden_override = 0) {
  if (!calls) calls = std::make_shared<std::atomic<int>>(0);
  const nlohmann::json ref = llava_reference(name);
  const std::string dir = llava_fixture(name);
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = context;
  const int64_t tokens = ref["image_seq_length"].get<int64_t>();
  return models::load_multimodal(
      dir, "", options,
      [&](const io::ModelFiles&, const io::HfConfig& config, std::shared_ptr<Backend>,
          const models::LoadOptions&) -> std::unique_ptr<models::ImageEncoder> {
        const int64_t hidden = hidden_override > 0
                                   ? hidden_override
                                   : config.json()["text_config"]["hidden_size"].get<int64_t>();
        return std::make_unique<FixtureEncoder>(dir, tokens, hidden, calls);
      });
}

}  // namespace af::test
