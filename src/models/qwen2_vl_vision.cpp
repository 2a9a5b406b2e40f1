// Qwen2-VL's vision transformer (Qwen2VisionTransformerPretrainedModel) and Qwen2.5-VL's
// (Qwen2_5_VisionTransformerPretrainedModel) with their PatchMerger, as transformers computes
// them in float32:
//   x = Conv3d patch embedding (a matmul over the flattened [3, T, P, P] patch)
//   2-D rotary embedding: the first half of each head's frequencies by the patch row, the second
//     by its column (head_dim / 4 frequencies each), rotate_half layout
//   blocks: x += proj(attn(norm1(x))); x += mlp(norm2(x)); attention within each frame (Qwen2-VL)
//     or, Qwen2.5-VL, within windows of window_size pixels except in fullatt_block_indexes
//   Qwen2-VL: LayerNorm + fc1/quick_gelu/fc2; Qwen2.5-VL: RMSNorm + gate/up/down SwiGLU (biased)
//   merger: ln_q, merge^2 consecutive rows concatenated, Linear, GELU, Linear.
// Qwen2.5-VL permutes the merge blocks into window order first and the merged rows back after.
#include "models/qwen2_vl_vision.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <utility>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/var_builder.hpp"
#include "models/decoder_lm.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "qwen2_vl";

struct VisionSpec {
  bool qwen25 = false;
  int64_t depth = 0, embed = 0, heads = 0, ffn = 0, out = 0;
  int64_t patch = 0, temporal = 0, merge = 0, in_channels = 3;
  int64_t window = 0;                // Qwen2.5-VL: window_size in pixels
  std::vector<int64_t> full_blocks;  // Qwen2.5-VL: fullatt_block_indexes
  std::string act;                   // quick_gelu (Qwen2-VL) / silu (Qwen2.5-VL)
  double theta = 10000.0;

  int64_t head_dim() const { return embed / heads; }
  int64_t patch_cols() const { return in_channels * temporal * patch * patch; }
  bool full_attention(int64_t block) const {
    return !qwen25 || std::find(full_blocks.begin(), full_blocks.end(), block) != full_blocks.end();
  }
};

int64_t positive(const io::HfConfig& c, const std::string& key, int64_t fallback) {
  const int64_t v = c.get_int(key, fallback);
  AF_CHECK(v > 0 && v <= (1 << 20), ErrorCode::kFormat, kComponent, c.origin(), ": \"", key,
           "\" = ", v, " is outside 1..1048576");
  return v;
}

VisionSpec spec_from(const io::HfConfig& config) {
  const std::optional<io::HfConfig> vc = config.object("vision_config");
  AF_CHECK(vc.has_value(), ErrorCode::kFormat, kComponent, config.origin(),
           ": no \"vision_config\" object");
  VisionSpec s;
  s.qwen25 = config.architecture() == "Qwen2_5_VLForConditionalGeneration";
  s.depth = positive(*vc, "depth", 32);
  s.heads = positive(*vc, "num_heads", 16);
  s.patch = positive(*vc, "patch_size", 14);
  s.temporal = positive(*vc, "temporal_patch_size", 2);
  s.merge = positive(*vc, "spatial_merge_size", 2);
  s.in_channels = positive(*vc, "in_channels", 3);
  AF_CHECK(s.in_channels == 3, ErrorCode::kUnsupported, kComponent, vc->origin(), ": in_channels ",
           s.in_channels, " is not supported (RGB: 3)");
  if (s.qwen25) {
    s.embed = positive(*vc, "hidden_size", 1280);
    s.out = positive(*vc, "out_hidden_size", 3584);
    s.ffn = positive(*vc, "intermediate_size", 3420);
    s.window = positive(*vc, "window_size", 112);
    if (vc->has("fullatt_block_indexes")) {
      const auto& list = vc->json().at("fullatt_block_indexes");
      AF_CHECK(list.is_array(), ErrorCode::kFormat, kComponent, vc->origin(),
               ": \"fullatt_block_indexes\" must be a list of block indices");
      for (const auto& v : list) {
        AF_CHECK(v.is_number_integer(), ErrorCode::kFormat, kComponent, vc->origin(),
                 ": \"fullatt_block_indexes\" must hold integers");
        s.full_blocks.push_back(v.get<int64_t>());
      }
    }
    AF_CHECK(s.window % (s.merge * s.patch) == 0 && s.window / (s.merge * s.patch) > 0,
             ErrorCode::kFormat, kComponent, vc->origin(), ": window_size ", s.window,
             " is not a positive multiple of spatial_merge_size * patch_size");
    s.act = vc->get_string("hidden_act", "silu");
    AF_CHECK(s.act == "silu", ErrorCode::kUnsupported, kComponent, vc->origin(), ": hidden_act \"",
             s.act, "\" is not supported (silu)");
  } else {
    s.embed = positive(*vc, "embed_dim", 1280);
    s.out = positive(*vc, "hidden_size", 3584);
    s.ffn = static_cast<int64_t>(double(s.embed) * vc->get_float("mlp_ratio", 4.0));
    s.act = vc->get_string("hidden_act", "quick_gelu");
    AF_CHECK(s.act == "quick_gelu", ErrorCode::kUnsupported, kComponent, vc->origin(),
             ": hidden_act \"", s.act, "\" is not supported (quick_gelu)");
  }
  AF_CHECK(s.ffn > 0 && s.embed % s.heads == 0 && s.head_dim() % 4 == 0, ErrorCode::kFormat,
           kComponent, vc->origin(), ": the vision width ", s.embed, " over ", s.heads,
           " heads must give a head_dim that is a multiple of 4");
  if (const auto rope = vc->object("rope_parameters")) s.theta = rope->get_float("rope_theta", 1e4);
  return s;
}

// torch.nn.LayerNorm (Qwen2-VL, with bias) or Qwen2RMSNorm (Qwen2.5-VL), eps 1e-6 in both.
struct Norm {
  std::vector<float> weight, bias;  // [dim]; bias empty for RMSNorm
  static Norm load(const nn::VarBuilder& vb, int64_t dim, bool rms) {
    Norm n{vb.f32("weight", {dim}), {}};
    if (!rms) n.bias = vb.f32("bias", {dim});
    return n;
  }
  void forward(Backend& be, const float* x, int64_t rows, float* y) const {
    const auto dim = static_cast<int64_t>(weight.size());
    if (bias.empty()) {
      be.rms_norm(x, weight.data(), rows, dim, 1e-6f, y);
    } else {
      be.layer_norm(x, weight.data(), bias.data(), rows, dim, 1e-6f, y);
    }
  }
};

struct Block {
  Norm norm1, norm2;
  nn::Linear qkv, proj;
  nn::Linear fc1, fc2;        // Qwen2-VL
  nn::Linear gate, up, down;  // Qwen2.5-VL
};

// Where each patch row sits: its frame's row range and its (h, w) patch coordinates.
struct Layout {
  std::vector<int64_t> frames;        // boundaries of the frames (attention blocks), from 0 to n
  std::vector<int32_t> hpos, wpos;    // [n]
  std::vector<int64_t> window_index;  // Qwen2.5-VL: merge block at each permuted place
  std::vector<int64_t> windows;       // Qwen2.5-VL: window boundaries (in rows, permuted)
};

// get_vision_position_ids and get_vision_cu_seqlens: rows in merge-block order per frame.
Layout layout_of(std::span<const int64_t> grid_thw, int64_t merge) {
  Layout l;
  l.frames.push_back(0);
  for (size_t i = 0; i < grid_thw.size(); i += 3) {
    const int64_t t = grid_thw[i], h = grid_thw[i + 1], w = grid_thw[i + 2];
    for (int64_t f = 0; f < t; ++f) {
      for (int64_t bh = 0; bh < h / merge; ++bh)
        for (int64_t bw = 0; bw < w / merge; ++bw)
          for (int64_t mh = 0; mh < merge; ++mh)
            for (int64_t mw = 0; mw < merge; ++mw) {
              l.hpos.push_back(int32_t(bh * merge + mh));
              l.wpos.push_back(int32_t(bw * merge + mw));
            }
      l.frames.push_back(l.frames.back() + h * w);
    }
  }
  return l;
}

// get_vision_window_index: merge blocks regrouped window by window (windows of `cells` x
// `cells` merge blocks, row-major over the padded grid; empty cells dropped), per frame.
void add_windows(Layout& l, std::span<const int64_t> grid_thw, int64_t merge, int64_t cells) {
  const int64_t unit = merge * merge;
  int64_t base = 0;
  l.windows.assign(1, 0);
  for (size_t i = 0; i < grid_thw.size(); i += 3) {
    const int64_t t = grid_thw[i], gh = grid_thw[i + 1] / merge, gw = grid_thw[i + 2] / merge;
    // HF pads by cells - g % cells, a whole empty window when g divides: same windows.
    const int64_t nh = (gh + cells - 1) / cells + (gh % cells == 0 ? 1 : 0);
    const int64_t nw = (gw + cells - 1) / cells + (gw % cells == 0 ? 1 : 0);
    for (int64_t f = 0; f < t; ++f) {
      for (int64_t wh = 0; wh < nh; ++wh)
        for (int64_t ww = 0; ww < nw; ++ww) {
          int64_t count = 0;
          for (int64_t y = wh * cells; y < std::min(gh, (wh + 1) * cells); ++y)
            for (int64_t x = ww * cells; x < std::min(gw, (ww + 1) * cells); ++x, ++count)
              l.window_index.push_back(base + (f * gh + y) * gw + x);
          // unique_consecutive drops the empty windows' repeated boundaries.
          if (count > 0) l.windows.push_back(l.windows.back() + count * unit);
        }
    }
    base += t * gh * gw;
  }
}

class Qwen2VLVision final : public Qwen2VLVisionEncoder {
 public:
  Qwen2VLVision(const nn::VarBuilder& vb, VisionSpec spec,
                std::unique_ptr<modalities::ImageProcessor> processor,
                std::shared_ptr<Backend> backend)
      : spec_(std::move(spec)), processor_(std::move(processor)), backend_(std::move(backend)) {
    const modalities::ImageProcessorConfig& pc = processor_->config();
    AF_CHECK(pc.type == "Qwen2VLImageProcessor" && pc.patch_size == spec_.patch &&
                 pc.temporal_patch_size == spec_.temporal && pc.merge_size == spec_.merge,
             ErrorCode::kFormat, kComponent, "the image processor (", pc.type, ", patch ",
             pc.patch_size, ", temporal ", pc.temporal_patch_size, ", merge ", pc.merge_size,
             ") does not match vision_config (Qwen2VLImageProcessor, patch ", spec_.patch,
             ", temporal ", spec_.temporal, ", merge ", spec_.merge, ")");
    load_weights(vb);
    init_rope();
  }

  const modalities::ImageProcessor& processor() const override { return *processor_; }
  int64_t output_hidden() const override { return spec_.out; }
  int64_t merge_size() const override { return spec_.merge; }

  std::vector<int64_t> image_grid(const modalities::Image& image) const override {
    const modalities::ImageProcessorConfig& c = processor_->config();
    int64_t h = image.height(), w = image.width();
    if (c.do_resize) {
      std::tie(h, w) = modalities::qwen2vl_smart_resize(h, w, spec_.patch * spec_.merge,
                                                        c.min_pixels, c.max_pixels);
    }
    return {1, h / spec_.patch, w / spec_.patch};
  }

  int64_t num_image_tokens(const modalities::Image& image) const override {
    const std::vector<int64_t> g = image_grid(image);
    return g[0] * g[1] * g[2] / (spec_.merge * spec_.merge);
  }

  ImageFeatures encode(const modalities::Image& image) override {
    const modalities::PixelValues pv = processor_->preprocess(image);
    return encode_patches(pv.data, pv.grid_thw);  // grid_thw set from pv's
  }

  ImageFeatures encode_patches(std::span<const float> patches,
                               std::span<const int64_t> grid_thw) override {
    const int64_t n = check_patches(patches, grid_thw);
    Layout layout = layout_of(grid_thw, spec_.merge);
    if (spec_.qwen25)
      add_windows(layout, grid_thw, spec_.merge, spec_.window / (spec_.merge * spec_.patch));
    Backend& be = *backend_;
    const int64_t e = spec_.embed, unit = spec_.merge * spec_.merge;
    std::vector<float> x(static_cast<size_t>(n * e));
    patch_embed_.forward(be, patches.data(), n, x.data());
    if (spec_.qwen25) permute_blocks(layout, x, e);
    std::vector<float> cos, sin;
    rope_tables(layout, n, cos, sin);
    for (int64_t b = 0; b < spec_.depth; ++b) {
      const std::vector<int64_t>& blocks = spec_.full_attention(b) ? layout.frames : layout.windows;
      run_block(blocks_[static_cast<size_t>(b)], x, n, blocks, cos, sin);
    }
    merger_norm_.forward(be, x.data(), n, x.data());
    const int64_t merged = n / unit;
    std::vector<float> h(static_cast<size_t>(merged * e * unit));
    merger_fc1_.forward(be, x.data(), merged, h.data());
    be.gelu(h.data(), merged * e * unit, GeluKind::kErf);
    ImageFeatures out;
    out.n_tokens = merged;
    out.hidden = spec_.out;
    out.rows.resize(static_cast<size_t>(merged * spec_.out));
    merger_fc2_.forward(be, h.data(), merged, out.rows.data());
    if (spec_.qwen25) unpermute_rows(layout.window_index, out.rows, spec_.out);
    out.grid_thw.assign(grid_thw.begin(), grid_thw.end());
    return out;
  }

 private:
  void load_weights(const nn::VarBuilder& vb) {
    const int64_t e = spec_.embed, cols = spec_.patch_cols(), unit = spec_.merge * spec_.merge;
    const Tensor w =
        vb.sub("patch_embed")
            .sub("proj")
            .tensor("weight", {e, spec_.in_channels, spec_.temporal, spec_.patch, spec_.patch});
    AF_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::F16 || w.dtype() == DType::BF16,
             ErrorCode::kUnsupported, kComponent, vb.path("patch_embed.proj.weight"),
             " is stored as ", name(w.dtype()), "; the patch embedding takes f32, f16 or bf16");
    patch_embed_.weight = w.reshape({e, cols});
    patch_embed_.in = cols;
    patch_embed_.out = e;
    const bool rms = spec_.qwen25;
    for (int64_t i = 0; i < spec_.depth; ++i) {
      const nn::VarBuilder b = vb.sub("blocks").sub(i), a = b.sub("attn"), m = b.sub("mlp");
      Block blk{Norm::load(b.sub("norm1"), e, rms),
                Norm::load(b.sub("norm2"), e, rms),
                nn::Linear::load(a.sub("qkv"), e, 3 * e, true),
                nn::Linear::load(a.sub("proj"), e, e, true),
                {},
                {},
                {},
                {},
                {}};
      if (spec_.qwen25) {
        blk.gate = nn::Linear::load(m.sub("gate_proj"), e, spec_.ffn, true);
        blk.up = nn::Linear::load(m.sub("up_proj"), e, spec_.ffn, true);
        blk.down = nn::Linear::load(m.sub("down_proj"), spec_.ffn, e, true);
      } else {
        blk.fc1 = nn::Linear::load(m.sub("fc1"), e, spec_.ffn, true);
        blk.fc2 = nn::Linear::load(m.sub("fc2"), spec_.ffn, e, true);
      }
      blocks_.push_back(std::move(blk));
    }
    const nn::VarBuilder merger = vb.sub("merger");
    merger_norm_ = Norm::load(merger.sub("ln_q"), e, rms);
    merger_fc1_ = nn::Linear::load(merger.sub("mlp").sub(0), e * unit, e * unit, true);
    merger_fc2_ = nn::Linear::load(merger.sub("mlp").sub(2), e * unit, spec_.out, true);
    Backend& be = *backend_;
    patch_embed_.prepare(be);
    for (Block& b : blocks_)
      for (nn::Linear* l : {&b.qkv, &b.proj, &b.fc1, &b.fc2, &b.gate, &b.up, &b.down})
        if (l->out > 0) l->prepare(be);
    merger_fc1_.prepare(be);
    merger_fc2_.prepare(be);
  }

  // compute_axial_rope_parameters: head_dim / 4 frequencies over spatial_dim = head_dim / 2, in
  // float32 as torch computes base ** (arange / spatial_dim).
  void init_rope() {
    const int64_t spatial = spec_.head_dim() / 2;
    for (int64_t i = 0; i < spatial; i += 2) {
      const float exponent = static_cast<float>(i) / static_cast<float>(spatial);
      inv_freq_.push_back(1.0f / std::pow(static_cast<float>(spec_.theta), exponent));
    }
  }

  int64_t check_patches(std::span<const float> patches, std::span<const int64_t> grid) const {
    AF_CHECK(!grid.empty() && grid.size() % 3 == 0, ErrorCode::kInvalidArgument, kComponent,
             "grid_thw must hold 3 values per image or video, got ", grid.size());
    int64_t n = 0;
    for (size_t i = 0; i < grid.size(); i += 3) {
      const int64_t t = grid[i], h = grid[i + 1], w = grid[i + 2];
      AF_CHECK(t > 0 && h > 0 && w > 0 && h % spec_.merge == 0 && w % spec_.merge == 0 &&
                   t <= (1 << 16) && h <= (1 << 16) && w <= (1 << 16),
               ErrorCode::kInvalidArgument, kComponent, "grid_thw (", t, ", ", h, ", ", w,
               ") must be positive with h and w multiples of spatial_merge_size ", spec_.merge);
      n += t * h * w;
    }
    AF_CHECK(int64_t(patches.size()) == n * spec_.patch_cols(), ErrorCode::kInvalidArgument,
             kComponent, "grid_thw gives ", n, " patches of ", spec_.patch_cols(),
             " values, but the pixel values hold ", patches.size());
    return n;
  }

  // Rows in merge blocks of `unit`, rearranged to window order: x'[i] = x[window_index[i]].
  void permute_blocks(const Layout& l, std::vector<float>& x, int64_t width) const {
    const int64_t block = spec_.merge * spec_.merge * width;
    std::vector<float> out(x.size());
    for (size_t i = 0; i < l.window_index.size(); ++i)
      std::copy_n(x.begin() + l.window_index[i] * block, block, out.begin() + int64_t(i) * block);
    x.swap(out);
  }
  static void unpermute_rows(const std::vector<int64_t>& index, std::vector<float>& rows,
                             int64_t width) {
    std::vector<float> out(rows.size());
    for (size_t i = 0; i < index.size(); ++i)
      std::copy_n(rows.begin() + int64_t(i) * width, width, out.begin() + index[i] * width);
    rows.swap(out);
  }

  // cos/sin [n, head_dim / 2] in the (possibly window-permuted) row order: frequency j <
  // head_dim / 4 by the patch row, the rest by its column.
  void rope_tables(const Layout& l, int64_t n, std::vector<float>& cos,
                   std::vector<float>& sin) const {
    const auto q = static_cast<int64_t>(inv_freq_.size()), half = 2 * q;
    cos.resize(static_cast<size_t>(n * half));
    sin.resize(cos.size());
    const int64_t unit = spec_.merge * spec_.merge;
    for (int64_t r = 0; r < n; ++r) {
      // The source row of permuted row r.
      const int64_t src =
          spec_.qwen25 ? l.window_index[static_cast<size_t>(r / unit)] * unit + r % unit : r;
      for (int64_t j = 0; j < half; ++j) {
        const float pos = float(j < q ? l.hpos[size_t(src)] : l.wpos[size_t(src)]);
        const float angle = pos * inv_freq_[size_t(j % q)];
        cos[size_t(r * half + j)] = std::cos(angle);
        sin[size_t(r * half + j)] = std::sin(angle);
      }
    }
  }

  // apply_rotary_pos_emb_vision on the q and k columns of fused qkv rows [n, 3 * embed].
  void apply_rope(float* qkv, int64_t n, const std::vector<float>& cos,
                  const std::vector<float>& sin) const {
    const int64_t e = spec_.embed, hd = spec_.head_dim(), half = hd / 2;
    for (int64_t r = 0; r < n; ++r) {
      const float* c = cos.data() + r * half;
      const float* s = sin.data() + r * half;
      for (int64_t part = 0; part < 2; ++part)
        for (int64_t head = 0; head < spec_.heads; ++head) {
          float* v = qkv + r * 3 * e + part * e + head * hd;
          for (int64_t j = 0; j < half; ++j) {
            const float a = v[j], b = v[j + half];
            v[j] = a * c[j] - b * s[j];
            v[j + half] = b * c[j] + a * s[j];
          }
        }
    }
  }

  void run_block(const Block& blk, std::vector<float>& x, int64_t n,
                 const std::vector<int64_t>& blocks, const std::vector<float>& cos,
                 const std::vector<float>& sin) {
    Backend& be = *backend_;
    const int64_t e = spec_.embed, hd = spec_.head_dim();
    h_.resize(static_cast<size_t>(n * e));
    qkv_.resize(static_cast<size_t>(n * 3 * e));
    att_.resize(static_cast<size_t>(n * e));
    blk.norm1.forward(be, x.data(), n, h_.data());
    blk.qkv.forward(be, h_.data(), n, qkv_.data());
    apply_rope(qkv_.data(), n, cos, sin);
    const AttentionMask mask{AttentionMaskKind::kBlocks, 0, blocks.data(),
                             static_cast<int64_t>(blocks.size()) - 1};
    const float* q = qkv_.data();
    be.attention_rows(q, 3 * e, q + e, 3 * e, q + 2 * e, 3 * e, n, n, spec_.heads, spec_.heads, hd,
                      1.0f / std::sqrt(float(hd)), mask, att_.data());
    blk.proj.forward(be, att_.data(), n, h_.data());
    be.add_scaled(x.data(), h_.data(), 1.0f, n * e);
    blk.norm2.forward(be, x.data(), n, h_.data());
    ffn_.resize(static_cast<size_t>(n * spec_.ffn));
    if (spec_.qwen25) {
      up_.resize(ffn_.size());
      blk.gate.forward(be, h_.data(), n, ffn_.data());
      blk.up.forward(be, h_.data(), n, up_.data());
      be.silu_mul(ffn_.data(), up_.data(), n * spec_.ffn);
      blk.down.forward(be, ffn_.data(), n, h_.data());
    } else {
      blk.fc1.forward(be, h_.data(), n, ffn_.data());
      be.gelu(ffn_.data(), n * spec_.ffn, GeluKind::kQuick);
      blk.fc2.forward(be, ffn_.data(), n, h_.data());
    }
    be.add_scaled(x.data(), h_.data(), 1.0f, n * e);
  }

  VisionSpec spec_;
  std::unique_ptr<modalities::ImageProcessor> processor_;
  std::shared_ptr<Backend> backend_;
  nn::Linear patch_embed_;  // [embed, 3 * T * P * P], no bias
  std::vector<Block> blocks_;
  Norm merger_norm_;
  nn::Linear merger_fc1_, merger_fc2_;           // [embed * merge^2] -> same -> [out]
  std::vector<float> inv_freq_;                  // [head_dim / 4]
  std::vector<float> h_, qkv_, att_, ffn_, up_;  // scratch
};

// preprocessor_config.json beside config.json, or transformers 5's processor_config.json with
// an "image_processor" object.
std::unique_ptr<modalities::ImageProcessor> load_processor(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir =
      fs::is_directory(model_path, ec) ? fs::path(model_path) : fs::path(model_path).parent_path();
  if (fs::exists(dir / "preprocessor_config.json", ec))
    return modalities::ImageProcessor::load((dir / "preprocessor_config.json").string());
  const fs::path proc = dir / "processor_config.json";
  AF_CHECK(fs::exists(proc, ec), ErrorCode::kFormat, kComponent, dir.string(),
           ": no preprocessor_config.json or processor_config.json beside config.json");
  const nlohmann::json j = io::read_json_file(proc.string());
  AF_CHECK(j.is_object() && j.contains("image_processor") && j["image_processor"].is_object(),
           ErrorCode::kFormat, kComponent, proc.string(), ": no \"image_processor\" object");
  return modalities::ImageProcessor::from_json(j["image_processor"].dump(),
                                               proc.string() + " image_processor");
}

}  // namespace

bool is_qwen2_vl_architecture(const std::string& architecture) {
  return architecture == "Qwen2VLForConditionalGeneration" ||
         architecture == "Qwen2_5_VLForConditionalGeneration";
}

std::unique_ptr<Qwen2VLVisionEncoder> load_qwen2_vl_vision(const io::ModelFiles& files,
                                                           const io::HfConfig& config,
                                                           std::shared_ptr<Backend> backend,
                                                           const LoadOptions& options) {
  AF_CHECK(files.format != "gguf", ErrorCode::kUnsupported, kComponent, files.path,
           ": the Qwen2-VL vision tower loads from an HF folder, not a GGUF mmproj (yet)");
  const VisionSpec spec = spec_from(config);
  const io::WeightSource& w = *files.weights;
  const std::string root = w.has("visual.patch_embed.proj.weight")         ? "visual"
                           : w.has("model.visual.patch_embed.proj.weight") ? "model.visual"
                                                                           : "";
  AF_CHECK(!root.empty(), ErrorCode::kFormat, kComponent, files.path,
           ": no vision tower weights (visual.patch_embed.proj.weight or "
           "model.visual.patch_embed.proj.weight)");
  const nn::VarBuilder vb = nn::VarBuilder(w, root).with_quantization(load_weight_type(options));
  return std::make_unique<Qwen2VLVision>(vb, spec, load_processor(files.path), std::move(backend));
}

}  // namespace af::models
