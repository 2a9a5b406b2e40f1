// Qwen2-VL / Qwen2.5-VL (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration):
// the vision tower + PatchMerger (qwen2_vl_vision.cpp) and a Qwen2 text decoder with M-RoPE
// (rope_parameters.mrope_section) on one backend. Images enter as rows replacing the
// "<|image_pad|>" embeddings; their M-RoPE positions come from qwen2_vl_rope_index (transformers'
// get_rope_index) and go to the decoder in InputEmbeddings::positions.
#include <algorithm>
#include <utility>

#include "af/core/error.hpp"
#include "af/models/multimodal.hpp"
#include "af/models/qwen2_vl.hpp"
#include "models/decoder_lm.hpp"
#include "models/qwen2_vl_vision.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "qwen2_vl";

class Qwen2VLLM final : public MultimodalLM {
 public:
  Qwen2VLLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<CausalLM> text,
            std::unique_ptr<Qwen2VLVisionEncoder> vision, int32_t image_token, int32_t video_token,
            std::string architecture)
      : files_(std::move(files)),
        text_(std::move(text)),
        vision_(std::move(vision)),
        image_token_(image_token),
        video_token_(video_token),
        info_(text_->info()) {
    info_.architecture = std::move(architecture);
    for (const auto& [id, key] :
         {std::pair{image_token_, "image_token_id"}, std::pair{video_token_, "video_token_id"}}) {
      AF_CHECK(id >= 0 && id < text_->config().vocab_size, ErrorCode::kFormat, kComponent,
               files_->path, ": ", key, " ", id, " is outside the text model's vocabulary of ",
               text_->config().vocab_size);
    }
    AF_CHECK(vision_->output_hidden() == text_->config().hidden_size, ErrorCode::kFormat,
             kComponent, files_->path, ": the merger makes rows of ", vision_->output_hidden(),
             " floats but the text model's hidden_size is ", text_->config().hidden_size);
  }

  int32_t image_token_id() const override { return image_token_; }
  ImageEncoder& image_encoder() override { return *vision_; }
  std::vector<int32_t> mrope_positions(std::span<const int32_t> ids,
                                       std::span<const modalities::Image> images) const override {
    std::vector<int64_t> grids;
    for (const modalities::Image& image : images) {
      const std::vector<int64_t> g = vision_->image_grid(image);
      grids.insert(grids.end(), g.begin(), g.end());
    }
    return qwen2_vl_rope_index(ids, image_token_, video_token_, grids, {}, vision_->merge_size());
  }

  ModelConfig config() const override { return text_->config(); }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return text_->n_past(); }
  void truncate(int64_t n) override { text_->truncate(n); }
  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    return text_->forward(ids, all_logits);
  }
  std::vector<float> forward_embeds(std::span<const int32_t> ids, bool all_logits,
                                    const InputEmbeddings& embeddings) override {
    return text_->forward_embeds(ids, all_logits, embeddings);
  }
  std::unique_ptr<SequenceState> new_sequence(int64_t context_length) override {
    return text_->new_sequence(context_length);
  }
  std::vector<float> forward_batch(std::span<const BatchItem> items) override {
    return text_->forward_batch(items);
  }

 private:
  std::shared_ptr<const io::ModelFiles> files_;  // the tower's weights are views into it
  std::unique_ptr<CausalLM> text_;
  std::unique_ptr<Qwen2VLVisionEncoder> vision_;
  int32_t image_token_, video_token_;
  ModelInfo info_;
};

// The text model's config: transformers 5's text_config (ids it lacks taken from the top), or
// the flat config.json of hub checkpoints (text keys at the top level beside vision_config).
io::HfConfig text_config(const io::HfConfig& config) {
  if (!config.has("text_config")) return config;
  AF_CHECK(config.json().at("text_config").is_object(), ErrorCode::kFormat, kComponent,
           config.origin(), ": field \"text_config\" must be an object");
  nlohmann::json text = config.json().at("text_config");
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    if ((!text.contains(key) || text[key].is_null()) && config.has(key))
      text[key] = config.json().at(key);
  }
  text["architectures"] = {config.architecture()};
  return io::HfConfig(std::move(text), config.origin() + " (text_config)");
}

// Hub checkpoints and transformers 5.25's save_pretrained: model.* + lm_head.*; transformers'
// module tree: model.language_model.* + lm_head.*.
DecoderRoot decoder_root(const io::WeightSource& w) {
  if (w.has("model.language_model.embed_tokens.weight")) return {"model.language_model", "lm_head"};
  return {"model", "lm_head"};
}

int32_t token_id(const io::HfConfig& config, const char* key, int64_t fallback) {
  const int64_t id = config.get_int(key, fallback);
  AF_CHECK(id >= 0 && id <= INT32_MAX, ErrorCode::kFormat, kComponent, config.origin(), ": ", key,
           " must be a token id, got ", id);
  return static_cast<int32_t>(id);
}

// One run of same-kind ids: [begin, end) of kind 0 (text), 1 (image) or 2 (video).
struct Run {
  int kind;
  size_t begin, end;
};

}  // namespace

std::vector<int32_t> qwen2_vl_rope_index(std::span<const int32_t> ids, int32_t image_token,
                                         int32_t video_token,
                                         std::span<const int64_t> image_grid_thw,
                                         std::span<const int64_t> video_grid_thw, int64_t merge,
                                         std::span<const double> video_intervals) {
  AF_CHECK(merge > 0 && image_grid_thw.size() % 3 == 0 && video_grid_thw.size() % 3 == 0,
           ErrorCode::kInvalidArgument, kComponent, "rope index: grids must hold 3 values each");
  const size_t n = ids.size();
  std::vector<int32_t> pos(3 * n);
  // itertools.groupby over the modality of each id, as get_rope_index groups them.
  std::vector<Run> runs;
  for (size_t i = 0; i < n; ++i) {
    const int kind = ids[i] == image_token ? 1 : ids[i] == video_token ? 2 : 0;
    if (runs.empty() || runs.back().kind != kind) runs.push_back({kind, i, i});
    runs.back().end = i + 1;
  }
  size_t next_image = 0, next_video = 0;
  int64_t current = 0;
  for (const Run& run : runs) {
    if (run.kind == 0) {
      for (size_t i = run.begin; i < run.end; ++i)
        for (size_t c = 0; c < 3; ++c) pos[c * n + i] = int32_t(current + int64_t(i - run.begin));
      current += int64_t(run.end - run.begin);
      continue;
    }
    const bool video = run.kind == 2;
    std::span<const int64_t> grids = video ? video_grid_thw : image_grid_thw;
    size_t& next = video ? next_video : next_image;
    AF_CHECK(next * 3 < grids.size(), ErrorCode::kInvalidArgument, kComponent,
             "the prompt has more ", video ? "video" : "image", " placeholder runs than ",
             video ? "videos" : "images", " (", grids.size() / 3, ")");
    const int64_t t = grids[next * 3], h = grids[next * 3 + 1] / merge,
                  w = grids[next * 3 + 2] / merge;
    const double interval = video && next < video_intervals.size() ? video_intervals[next] : 1.0;
    ++next;
    AF_CHECK(int64_t(run.end - run.begin) == t * h * w, ErrorCode::kInvalidArgument, kComponent,
             "a run of ", run.end - run.begin, " ", video ? "video" : "image",
             " placeholders does not match its grid (", t, " x ", h, " x ", w, " merged tokens)");
    size_t i = run.begin;
    for (int64_t a = 0; a < t; ++a)
      for (int64_t b = 0; b < h; ++b)
        for (int64_t c = 0; c < w; ++c, ++i) {
          pos[i] = int32_t(int64_t(double(a) * interval) + current);
          pos[n + i] = int32_t(b + current);
          pos[2 * n + i] = int32_t(c + current);
        }
    current += std::max(h, w);
  }
  return pos;
}

std::unique_ptr<CausalLM> make_qwen2_vl(io::ModelFiles files, const io::HfConfig& config,
                                        const LoadOptions& options) {
  AF_CHECK(files.format != "gguf", ErrorCode::kUnsupported, kComponent, files.path,
           ": Qwen2-VL loads from an HF folder (config.json + safetensors), not GGUF (yet)");
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  LoadOptions parts = options;
  if (!parts.backend)
    parts.backend = make_backend({options.device, options.num_threads, options.isa});
  const io::HfConfig text = text_config(config);
  std::unique_ptr<CausalLM> decoder = make_decoder_lm(shared, text, qwen2_decoder_spec(text), parts,
                                                      decoder_root(*shared->weights));
  auto vision = load_qwen2_vl_vision(*shared, config, parts.backend, parts);
  return std::make_unique<Qwen2VLLM>(
      shared, std::move(decoder), std::move(vision), token_id(config, "image_token_id", 151655),
      token_id(config, "video_token_id", 151656), config.architecture());
}

}  // namespace af::models
