// A custom model in two methods (plus config): AlloyForge's sampling, stop conditions and
// sessions work on anything that implements af::Model.
//
// This toy "counting" model predicts the successor of the last token it has seen, (last + 1)
// modulo the vocabulary, with a margin that makes greedy decoding deterministic. Run it with no
// arguments; it prints the ids it generated after the prompt 5 6 7.
#include <cstdio>
#include <vector>

#include "af/core/error.hpp"
#include "af/core/model.hpp"
#include "af/runtime/session.hpp"

class CountingModel : public af::Model {
 public:
  explicit CountingModel(int64_t vocab) : vocab_(vocab) {}

  void reset_state() override { seen_ = 0; }

  std::vector<float> forward_step(std::span<const int32_t> ids) override {
    seen_ += static_cast<int64_t>(ids.size());
    std::vector<float> logits(static_cast<size_t>(vocab_), 0.0f);
    logits[static_cast<size_t>((ids.back() + 1) % vocab_)] = 10.0f;
    return logits;
  }

  af::ModelConfig config() const override {
    return {.vocab_size = vocab_, .max_position_embeddings = 64};
  }

 private:
  int64_t vocab_;
  int64_t seen_ = 0;  // a real model keeps its KV cache here
};

int main() {
  try {
    auto session = af::SessionBuilder()
                       .eos_ids({0})  // the counter wraps to 0 and stops there
                       .build(std::make_unique<CountingModel>(12));
    auto response = session.generate({.max_tokens = 20, .prompt_ids = {5, 6, 7}});
    for (int32_t id : response.ids) std::printf("%d ", id);
    std::printf("[%s]\n", std::string(af::to_string(response.finish_reason)).c_str());
  } catch (const af::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
