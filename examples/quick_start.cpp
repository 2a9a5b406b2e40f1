// Quick start: load a model, build a session, generate.
//   quick_start [MODEL] [PROMPT]
// MODEL is an HF folder, a .safetensors file or a .gguf file.
#include <cstdio>
#include <string>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "../shared/testdata/models/stories260K-hf";
  const std::string prompt = argc > 2 ? argv[2] : "Once upon a time";
  try {
    // Weights converted to bfloat16 at load: half the memory of float32, the same text here.
    auto model = af::models::load(path, {.dtype = af::DType::BF16, .device = af::Device::cpu()});
    auto session = af::SessionBuilder().build(std::move(model));
    auto response = session.generate({.prompt = prompt, .max_tokens = 48});
    std::printf("%s%s\n", prompt.c_str(), response.text.c_str());
    std::fprintf(stderr, "[%s] %zu tokens, %.1f tokens/s\n",
                 std::string(af::to_string(response.finish_reason)).c_str(), response.ids.size(),
                 response.timings.generated_tokens_per_s);
  } catch (const af::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
