#pragma once
// af-cli subcommands. Each registers its options on the CLI11 app and returns the function that
// runs it; errors propagate as af::Error to main(), which prints them and exits non-zero.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace af::cli {

using Command = std::function<int()>;

// --isa, the same on every subcommand that loads a model (LoadOptions::isa).
inline void add_isa_option(CLI::App& sub, std::string& isa) {
  sub.add_option("--isa", isa,
                 "force CPU kernels: scalar, avx2 (with AVX-VNNI int8 dot products where the CPU "
                 "has them), avx512");
}

Command add_inspect(CLI::App& app);
Command add_logits(CLI::App& app);
Command add_run(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_template(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_preprocess(CLI::App& app);
Command add_image_features(CLI::App& app);
Command add_log_mel(CLI::App& app);
Command add_transcribe(CLI::App& app);
Command add_embed(CLI::App& app);
// af-cli logits --audio on a Whisper folder: the decoder logits of `ids` over that audio, printed
// as logits prints them (cmd_whisper.cpp).
int print_whisper_logits(const std::string& model, const std::string& audio,
                         const std::vector<int32_t>& ids, int threads, const std::string& isa);

// af-cli preprocess --video (cmd_preprocess_video.cpp): Qwen2-VL's pixel_values_videos.
struct VideoPreprocessOptions {
  std::string model;  // "" for Qwen2VLVideoProcessor's defaults
  std::string video;
  double fps = 2.0;
  int max_frames = 768;
  int nframes = 0;
};
int print_video_pixel_values(const VideoPreprocessOptions& options);

}  // namespace af::cli
