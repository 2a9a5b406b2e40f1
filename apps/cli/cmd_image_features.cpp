// af-cli image-features -m MODEL [--mmproj FILE] --image IMG [--image IMG2 ...]: the rows that
// replace each image's placeholder tokens (transformers' get_image_features after the projector,
// with LLaVA-NeXT's unpad/newline arrangement). Output contract (read by other tools): one line
// per image token, images in the order given, each the text model's hidden_size floats as %.9g
// (round-trips float32). --video FILE [--fps F] [--max-frames N] (Qwen2-VL, Qwen2.5-VL): the
// video's merged rows (get_video_features) in the same form.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/image_encoder.hpp"
#include "af/models/model_files.hpp"
#include "af/models/multimodal.hpp"
#include "cli_common.hpp"
#include "cli_video.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

void print_rows(const models::ImageFeatures& f) {
  std::string line;
  char number[32];
  for (int64_t r = 0; r < f.n_tokens; ++r) {
    line.clear();
    for (int64_t i = 0; i < f.hidden; ++i) {
      std::snprintf(number, sizeof(number), i == 0 ? "%.9g" : " %.9g",
                    double(f.rows[size_t(r * f.hidden + i)]));
      line += number;
    }
    std::printf("%s\n", line.c_str());
  }
}

// The text model's hidden_size: an HF LLaVA folder's text_config, or a text model's own config
// (a GGUF's synthesised one included).
int64_t text_hidden_size(const io::ModelFiles& files) {
  const io::HfConfig config(files.config, files.path);
  if (const auto text = config.object("text_config")) return text->get_int("hidden_size");
  return config.get_int("hidden_size");
}

// A video's rows: the whole model loads (its video processor and budget go with the text side's
// config); the KV cache reserves rows lazily, so the text model costs only its mapped weights.
int print_video_rows(const std::string& path, models::LoadOptions options,
                     const VideoFlags& flags) {
  options.context_length = 0;
  auto model = models::load(path, options);
  const modalities::Video video = load_video(*model, flags);
  print_rows(dynamic_cast<models::MultimodalLM&>(*model).encode_video(video).features);
  return 0;
}

}  // namespace

Command add_image_features(CLI::App& app) {
  struct Options {
    std::string model, mmproj, isa;
    std::vector<std::string> images;
    int threads = 0;
    uint64_t max_pixels = modalities::ImageLimits{}.max_pixels;
    VideoFlags video;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("image-features",
                                 "Print the projected image embeddings that replace the image "
                                 "placeholder tokens, one line per token");
  sub->add_option("-m,--model", o->model, "HF LLaVA folder, or the text model of --mmproj")
      ->required();
  sub->add_option("--mmproj", o->mmproj, "mmproj GGUF (llama.cpp's converter) with the encoder");
  auto* image = sub->add_option("--image", o->images,
                                "JPEG, PNG, GIF (first frame), WebP or BMP; repeatable");
  add_video_flags(*sub, o->video);
  image->excludes(sub->get_option("--video"));
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  add_isa_option(*sub, o->isa);
  sub->add_option("--max-pixels", o->max_pixels, "refuse images with more pixels (header check)")
      ->capture_default_str();
  return [o]() {
    require_flag(!o->images.empty() || !o->video.path.empty(), "--image/--video",
                 "is required (the media to encode)");
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    if (!o->video.path.empty()) return print_video_rows(o->model, options, o->video);
    std::shared_ptr<Backend> backend =
        make_backend({options.device, options.num_threads, options.isa});
    const io::ModelFiles model = models::open_model_files(o->model);
    const io::ModelFiles mmproj =
        o->mmproj.empty() ? io::ModelFiles{} : models::open_model_files(o->mmproj);
    const io::ModelFiles& files = o->mmproj.empty() ? model : mmproj;
    auto encoder =
        models::load_image_encoder(files, io::HfConfig(files.config, files.path), backend, options);
    const int64_t hidden = text_hidden_size(model);
    AF_CHECK(encoder->output_hidden() == hidden, ErrorCode::kInvalidArgument, "cli",
             o->mmproj.empty() ? o->model : o->mmproj, ": the projector makes rows of ",
             encoder->output_hidden(), " floats but ", o->model, " has hidden_size ", hidden,
             " (the mmproj does not belong to this model)");
    modalities::ImageLimits limits;
    limits.max_pixels = o->max_pixels;
    for (const std::string& path : o->images) {
      print_rows(encoder->encode(modalities::Image::load(path, limits)));
    }
    return 0;
  };
}

}  // namespace af::cli
