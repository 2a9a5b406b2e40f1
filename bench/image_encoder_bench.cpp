// Image encode time of an mmproj (vision tower + projector): preprocessing, the ViT and the
// projector for one image, on AF_BENCH_THREADS threads (default 2). bench/make_clip_mmproj.py
// makes a CLIP ViT-L/14-336-shaped mmproj; docs/PERFORMANCE.md has the run beside llama.cpp's
// mtmd on the same file:
//   AF_MMPROJ=clip336-f16.gguf build/bench/image_encoder_bench
// (AF_IMAGE_BENCH_FILE: the image, default ../shared/testdata/images/rocket.jpg).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/image_encoder.hpp"
#include "af/models/model_files.hpp"

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

void BM_EncodeImage(benchmark::State& state) {
  const std::string path = env_or("AF_MMPROJ", "");
  if (path.empty()) return state.SkipWithError("set AF_MMPROJ to an mmproj GGUF");
  const int threads = std::atoi(env_or("AF_BENCH_THREADS", "2").c_str());
  const af::io::ModelFiles files = af::models::open_model_files(path);
  std::shared_ptr<af::Backend> backend = af::make_backend({af::Device::cpu(), threads, ""});
  auto encoder =
      af::models::load_image_encoder(files, af::io::HfConfig(files.config, path), backend, {});
  const auto image = af::modalities::Image::load(
      env_or("AF_IMAGE_BENCH_FILE", "../shared/testdata/images/rocket.jpg"));
  for (auto _ : state) {
    auto features = encoder->encode(image);
    benchmark::DoNotOptimize(features.rows.data());
  }
  state.counters["tokens"] = static_cast<double>(encoder->num_image_tokens(image));
}
BENCHMARK(BM_EncodeImage)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
