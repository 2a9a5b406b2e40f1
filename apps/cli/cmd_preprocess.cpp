// af-cli preprocess -m MODEL --image IMG: the pixel values the model's image processor gives.
// Output contract (read by other tools): first line the shape ("3 336 336", or "5 3 336 336" for
// anyres, "256 1176" for Qwen2-VL's flattened patches), then one line per row of the last
// dimension, floats as %.9g (round-trips float32). Qwen2-VL's image_grid_thw goes to stderr
// ("image_grid_thw 1 16 16"), keeping stdout the pixel values alone. MiniCPM-V: its pieces
// (overview, then slices) concatenated along the last axis ("3 14 N"), their sizes in patches to
// stderr ("tgt_sizes 32 32 23 45 23 45").
#include <cstdio>
#include <memory>
#include <string>

#include "af/modalities/image.hpp"
#include "af/modalities/image_processor.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

void print_pixel_values(const modalities::PixelValues& pv) {
  std::string line;
  for (size_t i = 0; i < pv.shape.size(); ++i) {
    line += (i ? " " : "") + std::to_string(pv.shape[i]);
  }
  std::printf("%s\n", line.c_str());
  const size_t row = size_t(pv.shape.back());
  char number[32];
  for (size_t start = 0; start < pv.data.size(); start += row) {
    line.clear();
    for (size_t i = start; i < start + row; ++i) {
      std::snprintf(number, sizeof(number), i == start ? "%.9g" : " %.9g", double(pv.data[i]));
      line += number;
    }
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace

Command add_preprocess(CLI::App& app) {
  struct Options {
    std::string model, image;
    uint64_t max_pixels = modalities::ImageLimits{}.max_pixels;
    VideoPreprocessOptions video;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("preprocess",
                                 "Print an image's (or a video's) pixel values as the model's "
                                 "HF image (Qwen2-VL video) processor computes them");
  sub->add_option("-m,--model", o->model,
                  "HF folder with preprocessor_config.json, or that file (optional for --video: "
                  "Qwen2VLVideoProcessor's defaults)");
  auto* image = sub->add_option("--image", o->image, "JPEG, PNG, GIF (first frame), WebP or BMP");
  auto* video = sub->add_option("--video", o->video.video,
                                "MP4/MOV, MKV/WebM, AVI, MPEG-TS, Ogg, FLV or GIF (Qwen2-VL)");
  image->excludes(video);
  sub->add_option("--fps", o->video.fps, "--video: frames sampled per second")
      ->capture_default_str();
  sub->add_option("--max-frames", o->video.max_frames, "--video: most frames sampled")
      ->capture_default_str();
  sub->add_option("--nframes", o->video.nframes, "--video: sample exactly this many frames");
  sub->add_option("--max-pixels", o->max_pixels, "refuse images with more pixels (header check)")
      ->capture_default_str();
  return [o]() {
    if (!o->video.video.empty()) {
      o->video.model = o->model;
      return print_video_pixel_values(o->video);
    }
    if (o->image.empty() || o->model.empty()) {
      throw UsageError("preprocess needs -m MODEL and --image IMG, or --video FILE");
    }
    auto processor = modalities::ImageProcessor::load(o->model);
    modalities::ImageLimits limits;
    limits.max_pixels = o->max_pixels;
    const modalities::Image image = modalities::Image::load(o->image, limits);
    const modalities::PixelValues pv = processor->preprocess(image);
    if (!pv.grid_thw.empty()) {
      std::fprintf(stderr, "image_grid_thw %lld %lld %lld\n", (long long)pv.grid_thw[0],
                   (long long)pv.grid_thw[1], (long long)pv.grid_thw[2]);
    }
    if (!pv.tgt_sizes.empty()) {  // MiniCPM-V: one {h, w} per piece
      std::string sizes = "tgt_sizes";
      for (int64_t v : pv.tgt_sizes) sizes += " " + std::to_string(v);
      std::fprintf(stderr, "%s\n", sizes.c_str());
    }
    print_pixel_values(pv);
    return 0;
  };
}

}  // namespace af::cli
