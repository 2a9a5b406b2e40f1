// af-cli logits -m PATH --ids "1 403 407": one line per input position, vocab_size logits
// separated by spaces, 9 significant digits (float32 round-trips).
// With --image IMG (repeatable; multimodal models, --mmproj FILE for a text GGUF) the ids hold
// the model's image token once per image (expanded as the HF processor expands it) or already
// expanded; one line per position of the expanded sequence. --audio FILE: Whisper's decoder logits
// over that audio, or for an audio-language model (Qwen2-Audio) the ids' audio token ("<|AUDIO|>")
// once (expanded as Qwen2AudioProcessor does) or already expanded, as for images. --video FILE
// [--fps F] [--max-frames N] (Qwen2-VL, Qwen2.5-VL): the ids' "<|video_pad|>" likewise, with the
// video's M-RoPE positions.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/model_files.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/prompt.hpp"
#include "cli_common.hpp"
#include "cli_video.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    AF_CHECK(used == word.size() && value >= 0 && value <= INT32_MAX, ErrorCode::kInvalidArgument,
             "cli", "bad token id \"", word, "\" in --ids");
    ids.push_back(static_cast<int32_t>(value));
  }
  AF_CHECK(!ids.empty(), ErrorCode::kInvalidArgument, "cli", "--ids holds no token ids");
  return ids;
}

// The logits of every position of `ids` with `images` in place of their placeholders.
std::vector<float> image_logits(models::CausalLM& model, std::vector<int32_t>& ids,
                                const std::vector<std::string>& paths) {
  auto* mm = dynamic_cast<models::MultimodalLM*>(&model);
  AF_CHECK(mm != nullptr, ErrorCode::kUnsupported, "cli", model.info().path,
           ": this model takes no images (it is a text-only model)");
  std::vector<modalities::Image> images;
  std::vector<int64_t> counts;
  for (const std::string& path : paths) {
    images.push_back(modalities::Image::load(path));
    counts.push_back(mm->image_encoder().num_image_tokens(images.back()));
  }
  if (auto expanded = mm->expand_image_placeholders(ids, images)) ids = std::move(*expanded);
  runtime::ImagePrompt placed = runtime::expand_image_tokens(ids, mm->image_token_id(), counts);
  AF_CHECK(static_cast<int64_t>(placed.ids.size()) <= model.info().context_length,
           ErrorCode::kOutOfRange, "cli", "the expanded prompt has ", placed.ids.size(),
           " tokens; the context holds ", model.info().context_length);
  std::vector<float> rows;
  for (const modalities::Image& image : images) {
    const models::ImageFeatures f = mm->image_encoder().encode(image);
    rows.insert(rows.end(), f.rows.begin(), f.rows.end());
  }
  ids = std::move(placed.ids);
  const std::vector<int32_t> positions = mm->mrope_positions(ids, images);  // M-RoPE models
  return model.forward_embeds(ids, true, {placed.mask, rows, positions});
}

// The logits of every position of `ids` with the audio's rows in place of its placeholders.
std::vector<float> audio_logits(models::CausalLM& model, std::vector<int32_t>& ids,
                                const std::string& path) {
  auto* mm = dynamic_cast<models::MultimodalLM*>(&model);
  AF_CHECK(mm != nullptr && mm->audio_encoder() != nullptr, ErrorCode::kUnsupported, "cli",
           model.info().path, ": this model takes no audio");
  const modalities::Audio audio = modalities::Audio::load(path);
  const std::vector<int64_t> counts = {mm->audio_encoder()->num_audio_tokens(audio)};
  runtime::ImagePrompt placed = runtime::expand_image_tokens(ids, mm->audio_token_id(), counts);
  AF_CHECK(static_cast<int64_t>(placed.ids.size()) <= model.info().context_length,
           ErrorCode::kOutOfRange, "cli", "the expanded prompt has ", placed.ids.size(),
           " tokens; the context holds ", model.info().context_length);
  const models::AudioFeatures f = mm->audio_encoder()->encode(audio);
  ids = std::move(placed.ids);
  return model.forward_embeds(ids, true, {placed.mask, f.rows});
}

// The logits of every position of `ids` with the video's rows in place of its placeholders.
std::vector<float> video_logits(models::CausalLM& model, std::vector<int32_t>& ids,
                                const VideoFlags& flags) {
  VideoPrompt placed = place_video(model, ids, flags, model.info().context_length);
  ids = std::move(placed.ids);
  return model.forward_embeds(ids, true, {placed.mask, placed.rows, placed.positions});
}

bool is_whisper(const std::string& path) {
  const io::ModelFiles files = models::open_model_files(path);
  return io::HfConfig(files.config, path).architecture() == "WhisperForConditionalGeneration";
}

}  // namespace

Command add_logits(CLI::App& app) {
  struct Options {
    std::string path, ids, isa, mmproj, audio;
    std::vector<std::string> images;
    int threads = 0;
    KvCacheFlags kv;
    VideoFlags video;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("logits", "Print the logits of every position of an id sequence");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  sub->add_option("--ids", o->ids, "token ids separated by spaces")->required();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--image", o->images, "image for the ids' image tokens (repeatable)");
  sub->add_option("--mmproj", o->mmproj, "llama.cpp mmproj GGUF (image encoder) for a text GGUF");
  sub->add_option("--audio", o->audio,
                  "Whisper: the audio the decoder ids attend to; Qwen2-Audio: the ids' audio");
  add_video_flags(*sub, o->video);
  add_isa_option(*sub, o->isa);
  add_kv_cache_flags(*sub, o->kv);
  return [o]() {
    check_kv_cache_flags(o->kv);
    std::vector<int32_t> ids = parse_ids(o->ids);
    const int media_kinds =
        int(!o->audio.empty()) + int(!o->images.empty()) + int(!o->video.path.empty());
    AF_CHECK(media_kinds <= 1, ErrorCode::kInvalidArgument, "cli",
             "--audio, --image and --video together: a prompt takes one kind of media");
    if (!o->audio.empty() && is_whisper(o->path))
      return print_whisper_logits(o->path, o->audio, ids, o->threads, o->isa);
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.kv_type_k = kv_cache_k_type(o->kv);
    options.kv_type_v = kv_cache_v_type(o->kv);
    // With images the expanded length is known only once the model is loaded; cache rows are
    // reserved lazily, so the model's own context costs no memory up front.
    const bool media = media_kinds > 0;
    options.context_length = media ? 0 : static_cast<int64_t>(ids.size());
    options.mmproj = o->mmproj;
    auto model = models::load(o->path, options);
    std::vector<float> logits = !o->audio.empty()        ? audio_logits(*model, ids, o->audio)
                                : !o->video.path.empty() ? video_logits(*model, ids, o->video)
                                : o->images.empty()      ? model->forward(ids, true)
                                                         : image_logits(*model, ids, o->images);
    const int64_t vocab = model->config().vocab_size;
    std::string line;
    char number[32];
    for (size_t t = 0; t < ids.size(); ++t) {
      line.clear();
      for (int64_t j = 0; j < vocab; ++j) {
        std::snprintf(
            number, sizeof number, j ? " %.9g" : "%.9g",
            static_cast<double>(logits[t * static_cast<size_t>(vocab) + static_cast<size_t>(j)]));
        line += number;
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    return 0;
  };
}

}  // namespace af::cli
