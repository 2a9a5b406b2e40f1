// af-cli image-features -m MODEL [--mmproj FILE] --image IMG [--image IMG2 ...]: the rows that
// replace each image's placeholder tokens (transformers' get_image_features after the projector,
// with LLaVA-NeXT's unpad/newline arrangement). Output contract (read by other tools): one line
// per image token, images in the order given, each the text model's hidden_size floats as %.9g
// (round-trips float32).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/image_encoder.hpp"
#include "af/models/model_files.hpp"
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

}  // namespace

Command add_image_features(CLI::App& app) {
  struct Options {
    std::string model, mmproj, isa;
    std::vector<std::string> images;
    int threads = 0;
    uint64_t max_pixels = modalities::ImageLimits{}.max_pixels;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("image-features",
                                 "Print the projected image embeddings that replace the image "
                                 "placeholder tokens, one line per token");
  sub->add_option("-m,--model", o->model, "HF LLaVA folder, or the text model of --mmproj")
      ->required();
  sub->add_option("--mmproj", o->mmproj, "mmproj GGUF (llama.cpp's converter) with the encoder");
  sub->add_option("--image", o->images, "JPEG, PNG, GIF (first frame), WebP or BMP; repeatable")
      ->required();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  add_isa_option(*sub, o->isa);
  sub->add_option("--max-pixels", o->max_pixels, "refuse images with more pixels (header check)")
      ->capture_default_str();
  return [o]() {
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
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
