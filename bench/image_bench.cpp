// Image decoding and CLIP-336 preprocessing speed (single thread). bench/image_vs_pil.py runs it
// beside PIL + transformers on the same file:
//   AF_IMAGE_BENCH_FILE=photo.jpg build/bench/image_bench
// (AF_IMAGE_BENCH_CONFIG: the preprocessor config, default tests/fixtures/images/configs/clip336).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "af/modalities/image.hpp"
#include "af/modalities/image_processor.hpp"

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

const std::vector<uint8_t>& file_bytes() {
  static const std::vector<uint8_t> bytes = [] {
    std::ifstream in(env_or("AF_IMAGE_BENCH_FILE", "../shared/testdata/images/rocket.jpg"),
                     std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }();
  return bytes;
}

const af::modalities::ImageProcessor& clip() {
  static const auto p = af::modalities::ImageProcessor::load(
      env_or("AF_IMAGE_BENCH_CONFIG", "tests/fixtures/images/configs/clip336"));
  return *p;
}

void BM_Decode(benchmark::State& state) {
  for (auto _ : state) {
    auto image = af::modalities::Image::decode(file_bytes(), "bench");
    benchmark::DoNotOptimize(image.rgb().data());
  }
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_Preprocess(benchmark::State& state) {
  const auto image = af::modalities::Image::decode(file_bytes(), "bench");
  for (auto _ : state) {
    auto pv = clip().preprocess(image);
    benchmark::DoNotOptimize(pv.data.data());
  }
}
BENCHMARK(BM_Preprocess)->Unit(benchmark::kMillisecond);

void BM_DecodeAndPreprocess(benchmark::State& state) {
  for (auto _ : state) {
    auto pv = clip().preprocess(af::modalities::Image::decode(file_bytes(), "bench"));
    benchmark::DoNotOptimize(pv.data.data());
  }
}
BENCHMARK(BM_DecodeAndPreprocess)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
