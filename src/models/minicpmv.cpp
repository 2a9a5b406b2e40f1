// MiniCPM-V 2.6 (architectures "MiniCPMV", OpenBMB's modeling_minicpmv.py): a navit SigLIP tower
// ("vpm.*": pieces of any size, positions bucketed onto the tower's grid) and a perceiver
// resampler ("resampler.*": query_num learned queries cross-attending to the piece's patches with
// 2-D sincos positions) beside a Qwen2 text decoder ("llm.model.*", "llm.lm_head.*") on one
// backend. Each piece of an image (the overview, then its slices; MiniCPMVImageProcessor) becomes
// query_num rows that replace, in order, the "<unk>" placeholders the processor writes between
// "<image>"/"<slice>" and their closing tokens.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "af/core/error.hpp"
#include "af/modalities/minicpmv_processor.hpp"
#include "af/models/minicpmv.hpp"
#include "af/models/multimodal.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "models/decoder_lm.hpp"
#include "models/minicpmv.hpp"
#include "models/registry.hpp"
#include "models/text_backed_lm.hpp"
#include "models/vision_tower.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "minicpmv";
// MiniCPMVProcessor splits prompts on this literal tag (str.split), one per image.
constexpr std::string_view kTag = "(<image>./</image>)";

// torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / n), torch.arange(1 / side, 1, 1 / side),
// right=True) as SiglipVisionEmbeddings computes it: the tower-grid index of each of n patches
// along one side. torch's arange computes start + i * step in double and rounds to float32; the
// step 1 / n is a float32 tensor.
std::vector<int64_t> bucket_coords(int64_t n, int64_t side) {
  const double step = double(1.0f / float(n));
  const int64_t count = int64_t(std::ceil((1.0 - 1e-6) / step));
  const double b_step = 1.0 / double(side);
  const int64_t n_bounds = int64_t(std::ceil((1.0 - b_step) / b_step));
  std::vector<float> bounds(static_cast<size_t>(std::max<int64_t>(n_bounds, 0)));
  for (int64_t j = 0; j < n_bounds; ++j) bounds[size_t(j)] = float(b_step + double(j) * b_step);
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const float x = float(double(i) * step);
    int64_t k = 0;
    while (k < n_bounds && bounds[size_t(k)] <= x) ++k;
    out[size_t(i)] = k;
  }
  return out;
}

// get_2d_sincos_pos_embed row for patch (row r, column c) of width dim: sin/cos of the column
// times omega, then of the row, omega_k = 1 / 10000^(k / (dim / 4)), float32 as numpy computes.
void sincos_position(int64_t r, int64_t c, int64_t dim, float* out) {
  const int64_t quarter = dim / 4;
  for (int64_t k = 0; k < quarter; ++k) {
    const float omega = 1.0f / std::pow(10000.0f, float(k) / float(double(dim / 2) / 2.0));
    const float x = float(c) * omega, y = float(r) * omega;
    out[k] = std::sin(x);
    out[quarter + k] = std::cos(x);
    out[2 * quarter + k] = std::sin(y);
    out[3 * quarter + k] = std::cos(y);
  }
}

struct LayerNorm {
  std::vector<float> w, b;  // [dim]
  float eps = 1e-6f;        // the resampler's nn.LayerNorm(eps=1e-6)
  static LayerNorm load(const nn::VarBuilder& vb, int64_t dim, double eps = 1e-6) {
    return {vb.f32("weight", {dim}), vb.f32("bias", {dim}), float(eps)};
  }
  void forward(Backend& be, const float* x, int64_t rows, float* y) const {
    be.layer_norm(x, w.data(), b.data(), rows, int64_t(w.size()), eps, y);
  }
};

// The perceiver resampler (resampler.py): one nn.MultiheadAttention of dim / 128 heads.
class Resampler {
 public:
  Resampler(const nn::VarBuilder& vb, int64_t queries, int64_t dim, int64_t kv_dim)
      : queries_(queries), dim_(dim), heads_(dim / 128) {
    AF_CHECK(dim % 128 == 0 && heads_ > 0, ErrorCode::kFormat, kComponent, vb.path("attn"),
             ": the resampler has hidden_size / 128 heads; hidden_size ", dim,
             " is not a positive multiple of 128");
    query_ = vb.f32("query", {queries, dim});
    if (kv_dim != dim) kv_proj_ = nn::Linear::load(vb.sub("kv_proj"), kv_dim, dim, false);
    const std::vector<float> in_w = vb.sub("attn").f32("in_proj_weight", {3 * dim, dim});
    const std::vector<float> in_b = vb.sub("attn").f32("in_proj_bias", {3 * dim});
    for (int64_t i = 0; i < 3; ++i) {  // in_proj rows: q, then k, then v
      nn::Linear& l = i == 0 ? q_ : i == 1 ? k_ : v_;
      l.weight = Tensor::from_f32({dim, dim}, in_w.data() + i * dim * dim);
      l.bias.assign(in_b.begin() + i * dim, in_b.begin() + (i + 1) * dim);
      l.in = l.out = dim;
    }
    out_ = nn::Linear::load(vb.sub("attn").sub("out_proj"), dim, dim, true);
    ln_q_ = LayerNorm::load(vb.sub("ln_q"), dim);
    ln_kv_ = LayerNorm::load(vb.sub("ln_kv"), dim);
    ln_post_ = LayerNorm::load(vb.sub("ln_post"), dim);
    // x @ proj: a Linear holding proj transposed.
    const std::vector<float> proj = vb.f32("proj", {dim, dim});
    std::vector<float> t(proj.size());
    for (int64_t i = 0; i < dim; ++i)
      for (int64_t j = 0; j < dim; ++j) t[size_t(j * dim + i)] = proj[size_t(i * dim + j)];
    proj_.weight = Tensor::from_f32({dim, dim}, t.data());
    proj_.in = proj_.out = dim;
  }

  bool has_kv_proj() const { return kv_proj_.out > 0; }
  int64_t kv_dim() const { return has_kv_proj() ? kv_proj_.in : dim_; }

  // x[h * w, kv_dim] (one piece's tower rows) -> out[queries, dim].
  void forward(Backend& be, const float* x, int64_t h, int64_t w, float* out) const {
    const int64_t L = h * w, d = dim_, q_rows = queries_;
    std::vector<float> kv(size_t(L * d)), key(size_t(L * d)), k(size_t(L * d)), v(size_t(L * d));
    std::vector<float> q0(size_t(q_rows * d)), q(size_t(q_rows * d)), attn(size_t(q_rows * d));
    if (has_kv_proj()) {
      kv_proj_.forward(be, x, L, kv.data());
    } else {
      std::copy_n(x, L * d, kv.data());
    }
    ln_kv_.forward(be, kv.data(), L, kv.data());
    for (int64_t r = 0; r < h; ++r)  // keys see the patches' 2-D positions, values do not
      for (int64_t c = 0; c < w; ++c) sincos_position(r, c, d, key.data() + (r * w + c) * d);
    be.add_scaled(key.data(), kv.data(), 1.0f, L * d);
    ln_q_.forward(be, query_.data(), q_rows, q0.data());
    q_.forward(be, q0.data(), q_rows, q.data());
    k_.forward(be, key.data(), L, k.data());
    v_.forward(be, kv.data(), L, v.data());
    const int64_t head_dim = d / heads_;
    be.attention_rows(q.data(), d, k.data(), d, v.data(), d, q_rows, L, heads_, heads_, head_dim,
                      1.0f / std::sqrt(float(head_dim)), AttentionMask{}, attn.data());
    out_.forward(be, attn.data(), q_rows, q0.data());
    ln_post_.forward(be, q0.data(), q_rows, q0.data());
    proj_.forward(be, q0.data(), q_rows, out);
  }

 private:
  int64_t queries_, dim_, heads_;
  std::vector<float> query_;  // [queries, dim]
  nn::Linear kv_proj_;        // [dim, kv_dim]; absent when kv_dim == dim
  nn::Linear q_, k_, v_;      // [dim, dim] slices of in_proj_weight
  nn::Linear out_, proj_;     // [dim, dim]; proj_ holds proj transposed
  LayerNorm ln_q_, ln_kv_, ln_post_;
};

// The navit SigLIP tower + resampler as an ImageEncoder.
class MiniCPMVEncoder final : public ImageEncoder {
 public:
  MiniCPMVEncoder(const io::ModelFiles& files, const io::HfConfig& config,
                  std::shared_ptr<Backend> backend, const std::string& folder)
      : backend_(std::move(backend)),
        processor_(modalities::parse_minicpmv_config(read_text(folder), folder)) {
    const std::optional<io::HfConfig> vision = config.object("vision_config");
    AF_CHECK(vision.has_value(), ErrorCode::kFormat, kComponent, config.origin(),
             ": field \"vision_config\" is missing");
    const VitSpec spec = siglip_vision_spec(*vision);
    const int64_t layers = spec.num_layers - (config.get_bool("drop_vision_last_layer", true));
    const nn::VarBuilder vb(*files.weights);
    tower_ = VisionTower::load(vb.sub("vpm"), spec, layers);
    post_ = LayerNorm::load(vb.sub("vpm").sub("post_layernorm"), spec.hidden, spec.eps);
    queries_ = config.get_int("query_num", 64);
    AF_CHECK(queries_ > 0 && queries_ <= 4096, ErrorCode::kFormat, kComponent, config.origin(),
             ": query_num must be in [1, 4096]");
    AF_CHECK(processor_.minicpmv_config().image_feature_size == queries_, ErrorCode::kFormat,
             kComponent, folder, ": image_feature_size ",
             processor_.minicpmv_config().image_feature_size,
             " differs from config.json's query_num ", queries_);
    AF_CHECK(processor_.minicpmv_config().patch_size == spec.patch_size, ErrorCode::kFormat,
             kComponent, folder, ": patch_size ", processor_.minicpmv_config().patch_size,
             " differs from the tower's ", spec.patch_size);
    hidden_ = config.get_int("hidden_size");
    resampler_ = std::make_unique<Resampler>(vb.sub("resampler"), queries_, hidden_, spec.hidden);
    tower_.prepare(*backend_);
  }

  const modalities::ImageProcessor& processor() const override { return processor_; }
  int64_t output_hidden() const override { return hidden_; }
  int64_t num_image_tokens(const modalities::Image& image) const override {
    const auto grid = modalities::minicpmv_slice_grid(processor_.minicpmv_config(), image.width(),
                                                      image.height());
    return queries_ * (1 + (grid ? grid->first * grid->second : 0));
  }

  ImageFeatures encode(const modalities::Image& image) override {
    const modalities::PixelValues pv = processor_.preprocess(image);
    Backend& be = *backend_;
    const VitSpec& s = tower_.spec();
    const int64_t p = s.patch_size, hidden = s.hidden, n = pv.shape[2] / p;  // patches
    std::vector<float> x(size_t(n * hidden)), cols;
    tower_.patch_embedding().forward(be, pv.data.data(), p, pv.shape[2], cols, x.data());
    std::vector<int64_t> bounds{0};
    for (size_t i = 0; i < pv.tgt_sizes.size(); i += 2) {
      add_positions(pv.tgt_sizes[i], pv.tgt_sizes[i + 1], x.data() + bounds.back() * hidden);
      bounds.push_back(bounds.back() + pv.tgt_sizes[i] * pv.tgt_sizes[i + 1]);
    }
    const int64_t pieces = int64_t(bounds.size()) - 1;
    AttentionMask mask;  // each piece attends within itself, as the padded batch's mask does
    if (pieces > 1) mask = {AttentionMaskKind::kBlocks, 0, bounds.data(), pieces};
    tower_.run_layers(be, x.data(), n, mask);
    post_.forward(be, x.data(), n, x.data());

    ImageFeatures f;
    f.n_tokens = pieces * queries_;
    f.hidden = hidden_;
    f.rows.resize(size_t(f.n_tokens * hidden_));
    for (int64_t i = 0; i < pieces; ++i) {
      resampler_->forward(be, x.data() + bounds[size_t(i)] * hidden, pv.tgt_sizes[size_t(2 * i)],
                          pv.tgt_sizes[size_t(2 * i + 1)], f.rows.data() + i * queries_ * hidden_);
    }
    return f;
  }

 private:
  static std::string read_text(const std::string& folder) {
    const std::filesystem::path file = std::filesystem::path(folder) / "preprocessor_config.json";
    std::ifstream in(file, std::ios::binary);
    AF_CHECK(in.good(), ErrorCode::kIo, kComponent, file.string(),
             ": cannot open (MiniCPM-V needs its preprocessor_config.json beside config.json)");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Adds position_embedding rows to a piece of h x w patches: patch (r, c) takes the tower-grid
  // row bucket(r) * side + bucket(c).
  void add_positions(int64_t h, int64_t w, float* x) const {
    const int64_t side = tower_.spec().grid(), hidden = tower_.spec().hidden;
    const std::vector<int64_t> rows = bucket_coords(h, side), cols = bucket_coords(w, side);
    AF_CHECK(int64_t(rows.size()) == h && int64_t(cols.size()) == w, ErrorCode::kInternal,
             kComponent, "position buckets for a ", h, "x", w, " piece");
    const std::vector<float>& table = tower_.position_table();
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c)
        backend_->add_scaled(x + (r * w + c) * hidden,
                             table.data() + (rows[size_t(r)] * side + cols[size_t(c)]) * hidden,
                             1.0f, hidden);
  }

  std::shared_ptr<Backend> backend_;
  modalities::MiniCPMVImageProcessor processor_;
  VisionTower tower_;
  LayerNorm post_;  // vpm.post_layernorm
  std::unique_ptr<Resampler> resampler_;
  int64_t queries_ = 0, hidden_ = 0;
};

class MiniCPMVLM final : public TextBackedLM {
 public:
  MiniCPMVLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<CausalLM> text,
             std::unique_ptr<MiniCPMVEncoder> encoder,
             std::unique_ptr<const tok::Tokenizer> tokenizer, int32_t unk, std::string architecture)
      : TextBackedLM(std::move(files), std::move(text), std::move(architecture)),
        encoder_(std::move(encoder)),
        tokenizer_(std::move(tokenizer)),
        unk_(unk) {
    AF_CHECK(unk_ >= 0 && unk_ < text_->config().vocab_size, ErrorCode::kFormat, kComponent,
             files_->path, ": the placeholder token id ", unk_,
             " is outside the text model's vocabulary of ", text_->config().vocab_size);
  }

  // The processor's placeholder rows are "<unk>" tokens inside markup around each piece
  // (minicpmv_expand_ids writes it); images fill them in order.
  int32_t image_token_id() const override { return unk_; }
  ImageEncoder& image_encoder() override { return *encoder_; }
  std::string image_prompt_text(std::string_view text) const override {
    std::string out;
    size_t start = 0;
    for (size_t at = text.find(kTag); at != std::string_view::npos; at = text.find(kTag, start)) {
      out.append(text.substr(start, at - start)).append(processor_config().unk);
      start = at + kTag.size();
    }
    return out.append(text.substr(start));
  }
  std::string chat_image_text() const override { return processor_config().unk; }
  std::optional<std::vector<int32_t>> expand_image_placeholders(
      std::span<const int32_t> ids, std::span<const modalities::Image> images) const override {
    return minicpmv_expand_ids(*tokenizer_, processor_config(), ids, images);
  }

 private:
  std::unique_ptr<MiniCPMVEncoder> encoder_;
  std::unique_ptr<const tok::Tokenizer> tokenizer_;  // the processor's, for placeholder ids
  int32_t unk_;

  const modalities::MiniCPMVConfig& processor_config() const {
    return dynamic_cast<const modalities::MiniCPMVImageProcessor&>(encoder_->processor())
        .minicpmv_config();
  }
};

std::string model_folder(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return path;
  return std::filesystem::path(path).parent_path().string();
}

// The id of one of the processor's markup strings (`field`) in its tokenizer.
int32_t markup_id(const tok::Tokenizer& tokenizer, const std::string& text, const char* field) {
  const std::vector<int32_t> ids = tokenizer.encode(text, false);
  AF_CHECK(ids.size() == 1, ErrorCode::kFormat, kComponent, "the processor's ", field, " \"", text,
           "\" is not one token of the tokenizer (", ids.size(), " tokens)");
  return ids[0];
}

// Whether every run of `unk` in `ids` is one piece's `rows` placeholders inside its markup:
// "<image>" ... "</image>" or "<slice>" ... "</slice>".
bool runs_in_markup(const tok::Tokenizer& tokenizer, const modalities::MiniCPMVConfig& config,
                    std::span<const int32_t> ids, int32_t unk) {
  const int32_t im_start = markup_id(tokenizer, config.im_start, "im_start"),
                im_end = markup_id(tokenizer, config.im_end, "im_end"),
                slice_start = markup_id(tokenizer, config.slice_start, "slice_start"),
                slice_end = markup_id(tokenizer, config.slice_end, "slice_end");
  for (size_t i = 0; i < ids.size();) {
    if (ids[i] != unk) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < ids.size() && ids[end] == unk) ++end;
    const int32_t before = i > 0 ? ids[i - 1] : -1, after = end < ids.size() ? ids[end] : -1;
    const bool closed =
        (before == im_start && after == im_end) || (before == slice_start && after == slice_end);
    if (!closed || int64_t(end - i) != config.image_feature_size) return false;
    i = end;
  }
  return true;
}

// How many "<unk>" rows the processor gives `image`.
int64_t image_rows(const modalities::MiniCPMVConfig& config, const modalities::Image& image) {
  const auto grid = modalities::minicpmv_slice_grid(config, image.width(), image.height());
  return int64_t(config.image_feature_size) * (1 + (grid ? grid->first * grid->second : 0));
}

}  // namespace

std::vector<int32_t> minicpmv_prompt_ids(const tok::Tokenizer& tokenizer,
                                         const modalities::MiniCPMVConfig& config,
                                         std::string_view text,
                                         std::span<const modalities::Image> images) {
  std::string expanded;
  size_t start = 0, count = 0;
  for (size_t at = text.find(kTag); at != std::string_view::npos; at = text.find(kTag, start)) {
    AF_CHECK(count < images.size(), ErrorCode::kInvalidArgument, kComponent, "the prompt has more ",
             kTag, " tags than the ", images.size(), " image(s) given");
    expanded.append(text.substr(start, at - start));
    expanded += modalities::minicpmv_placeholder(config, images[count].width(),
                                                 images[count].height(), int(count));
    start = at + kTag.size();
    ++count;
  }
  AF_CHECK(count == images.size(), ErrorCode::kInvalidArgument, kComponent, "the prompt has ",
           count, " ", kTag, " tag(s) for ", images.size(), " image(s)");
  expanded.append(text.substr(start));
  return tokenizer.encode(expanded, true);
}

std::vector<int32_t> minicpmv_expand_ids(const tok::Tokenizer& tokenizer,
                                         const modalities::MiniCPMVConfig& config,
                                         std::span<const int32_t> ids,
                                         std::span<const modalities::Image> images) {
  std::vector<int32_t> out(ids.begin(), ids.end());
  if (images.empty()) return out;  // text only (runtime::expand_image_tokens refuses stray rows)
  const int32_t unk = markup_id(tokenizer, config.unk, "unk");
  int64_t rows = 0;
  for (const modalities::Image& image : images) rows += image_rows(config, image);
  const auto count = int64_t(std::count(ids.begin(), ids.end(), unk));
  if (count == rows && runs_in_markup(tokenizer, config, ids, unk)) return out;
  const auto n = int64_t(images.size());
  bool alone = true;  // no "<unk>" next to another one
  for (size_t i = 1; i < ids.size(); ++i) alone = alone && !(ids[i] == unk && ids[i - 1] == unk);
  AF_CHECK(count == n && alone, ErrorCode::kInvalidArgument, kComponent, "the prompt has ", count,
           " \"", config.unk, "\" placeholder(s) for ", n,
           " image(s); MiniCPM-V needs one per image (a ", kTag, " tag in a text prompt, or \"",
           config.unk, "\" where the image goes), or the processor's expansion (", rows,
           " of them inside their ", config.im_start, "/", config.slice_start, " markup)");
  out.clear();
  size_t image = 0;
  for (int32_t id : ids) {
    if (id != unk) {
      out.push_back(id);
      continue;
    }
    const modalities::Image& picture = images[image];
    const std::vector<int32_t> piece = tokenizer.encode(
        modalities::minicpmv_placeholder(config, picture.width(), picture.height(), int(image)),
        false);
    out.insert(out.end(), piece.begin(), piece.end());
    ++image;
  }
  return out;
}

std::unique_ptr<ImageEncoder> load_minicpmv_encoder(const io::ModelFiles& files,
                                                    const io::HfConfig& config,
                                                    std::shared_ptr<Backend> backend,
                                                    const LoadOptions& options) {
  (void)options;
  return std::make_unique<MiniCPMVEncoder>(files, config, std::move(backend),
                                           model_folder(files.path));
}

std::unique_ptr<CausalLM> make_minicpmv(io::ModelFiles files, const io::HfConfig& config,
                                        const LoadOptions& options) {
  AF_CHECK(files.format != "gguf", ErrorCode::kUnsupported, kComponent, files.path,
           ": MiniCPM-V loads from an HF folder (config.json + safetensors), not GGUF (yet)");
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  LoadOptions parts = options;
  if (!parts.backend)
    parts.backend = make_backend({options.device, options.num_threads, options.isa});
  const std::string folder = model_folder(shared->path);
  std::unique_ptr<CausalLM> decoder = make_decoder_lm(shared, config, qwen2_decoder_spec(config),
                                                      parts, {"llm.model", "llm.lm_head"});
  auto encoder = std::make_unique<MiniCPMVEncoder>(*shared, config, parts.backend, folder);
  std::unique_ptr<const tok::Tokenizer> tokenizer = tok::Tokenizer::load(folder);
  const std::string& unk =
      dynamic_cast<const modalities::MiniCPMVImageProcessor&>(encoder->processor())
          .minicpmv_config()
          .unk;
  const std::vector<int32_t> unk_ids = tokenizer->encode(unk, false);
  AF_CHECK(unk_ids.size() == 1, ErrorCode::kFormat, kComponent, folder, ": the placeholder \"", unk,
           "\" is not one token of the tokenizer (", unk_ids.size(), " tokens)");
  return std::make_unique<MiniCPMVLM>(shared, std::move(decoder), std::move(encoder),
                                      std::move(tokenizer), unk_ids[0], config.architecture());
}

namespace {
constexpr std::string_view kClasses[] = {"MiniCPMV"};
}  // namespace

// HF folders only (no GGUF form yet).
constinit const ArchitectureInfo kMiniCpmVArchitecture{kClasses, make_minicpmv};

}  // namespace af::models
