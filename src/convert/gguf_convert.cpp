#include "af/convert/gguf_convert.hpp"
#include "af/models/model_files.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/io/gguf_writer.hpp"
#include "af/io/model_files.hpp"
#include "convert/hf_to_gguf.hpp"

namespace af::convert {
namespace {

constexpr const char* kComponent = "convert";
using io::GgufWriter;

using Mixture = GgufTarget;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// llama.cpp's "use more bits" layers: the first and last eighth, and every third in between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Chooses tensor types the way llama_model_quantize does for the mixtures above. Layer indices
// come from counters over the tensors in file order, as in llama.cpp.
class TypeChooser {
 public:
  TypeChooser(const Mixture& mix, int n_attn_v, int n_ffn_down, int n_gqa, bool tied,
              std::function<void(const std::string&)> note)
      : mix_(mix),
        n_attn_v_(n_attn_v),
        n_ffn_down_(n_ffn_down),
        n_gqa_(n_gqa),
        tied_(tied),
        note_(std::move(note)) {}

  static bool quantizable(const std::string& name, int rank) {
    return rank >= 2 && name.ends_with("weight") && !contains(name, "_norm.weight");
  }

  // The type for a tensor of `rank` dims and `row` elements per row (source type `src`).
  DType choose(const std::string& name, int rank, int64_t row, DType src) {
    if (!quantizable(name, rank)) return src;
    DType t = mix_.base;
    if (!info(t).quantized) return t;
    const std::string m(mix_.name);
    const bool is_output = name == "output.weight" || (tied_ && name == "token_embd.weight");
    if (is_output) {
      if (row % info(t).block_size != 0) {
        t = DType::Q8_0;
      } else if (t != DType::Q8_0) {
        t = DType::Q6_K;
      }
    } else if (name == "token_embd.weight") {
      // untied: the base type
    } else if (contains(name, "attn_v.weight")) {
      if (m == "q2_k") {
        t = n_gqa_ >= 4 ? DType::Q4_K : DType::Q3_K;
      } else if (m == "q3_k_m") {
        t = i_attn_v_ < 2 ? DType::Q5_K : DType::Q4_K;
      } else if ((m == "q4_k_m" || m == "q5_k_m") && use_more_bits(i_attn_v_, n_attn_v_)) {
        t = DType::Q6_K;
      } else if (m == "q4_k_s" && i_attn_v_ < 4) {
        t = DType::Q5_K;
      }
      ++i_attn_v_;
    } else if (contains(name, "ffn_down")) {
      const int i = i_ffn_down_, n = n_ffn_down_;
      if (m == "q2_k") {
        t = DType::Q3_K;
      } else if (m == "q3_k_m") {
        t = i < n / 16 ? DType::Q5_K : DType::Q4_K;
      } else if ((m == "q4_k_m" || m == "q5_k_m") && use_more_bits(i, n)) {
        t = DType::Q6_K;
      } else if (m == "q4_k_s" && i < n / 8) {
        t = DType::Q5_K;
      }
      ++i_ffn_down_;
    } else if (contains(name, "attn_output.weight")) {
      if (m == "q2_k") t = DType::Q3_K;
      if (m == "q3_k_m") t = DType::Q4_K;
    }
    return fallback(name, row, t);
  }

 private:
  DType fallback(const std::string& name, int64_t row, DType t) const {
    if (row % info(t).block_size == 0) return t;
    DType f = quant::fallback_type(t).value_or(DType::F16);
    if (row % info(f).block_size != 0) f = DType::F16;
    if (note_) {
      note_(name + ": row of " + std::to_string(row) + " is not a multiple of " +
            std::string(af::name(t)) + "'s " + std::to_string(info(t).block_size) + ": " +
            std::string(af::name(f)));
    }
    return f;
  }

  const Mixture& mix_;
  int n_attn_v_, n_ffn_down_, n_gqa_;
  bool tied_;
  std::function<void(const std::string&)> note_;
  int i_attn_v_ = 0, i_ffn_down_ = 0;
};

// One row of `src` (any dense or block type) as float32.
void row_to_f32(const Tensor& src, int64_t r, int64_t k, float* out) {
  const int64_t bytes = row_bytes(src.dtype(), k);
  const std::byte* p = src.data() + r * bytes;
  switch (src.dtype()) {
    case DType::F32:
      std::memcpy(out, p, static_cast<size_t>(k) * 4);
      return;
    case DType::F16:
    case DType::BF16: {
      const bool half = src.dtype() == DType::F16;
      for (int64_t i = 0; i < k; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    }
    default:
      AF_CHECK(quant::is_supported(src.dtype()), ErrorCode::kUnsupported, kComponent,
               "cannot read source tensors of type ", name(src.dtype()));
      quant::dequantize_row(src.dtype(), p, out, k);
  }
}

void row_from_f32(DType type, const float* x, int64_t k, std::byte* dst) {
  switch (type) {
    case DType::F32:
      std::memcpy(dst, x, static_cast<size_t>(k) * 4);
      return;
    case DType::F16:
    case DType::BF16:
      for (int64_t i = 0; i < k; ++i) {
        const uint16_t h = type == DType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
      quant::quantize_row(type, x, dst, k);
  }
}

// A tensor of the output: its GGUF name, source, and the row permutation (q/k of Llama-family
// HF models) that turns HF's rotate-half rows into GGUF's interleaved pairs.
struct Planned {
  std::string name;
  Tensor src;
  int rope_heads = 0;  // > 0: permute rows in this many heads
};

// Source row that lands at output row r when permuting for interleaved RoPE: within each head
// of d rows, output row 2i + j comes from row j * d/2 + i.
int64_t permuted_source_row(int64_t r, int64_t rows, int heads) {
  const int64_t d = rows / heads;
  const int64_t h = r / d, within = r % d;
  const int64_t i = within / 2, j = within % 2;
  return h * d + j * (d / 2) + i;
}

GgufWriter::Fill make_fill(const Planned& p, DType type, int threads) {
  return [p, type, threads](std::span<std::byte> dst) {
    const Shape& s = p.src.shape();
    const int64_t k = s[s.rank() - 1];
    const int64_t rows = k ? p.src.numel() / k : 0;
    const int64_t out_row = row_bytes(type, k);
    AF_CHECK(p.rope_heads == 0 || rows % (2 * p.rope_heads) == 0, ErrorCode::kFormat, kComponent,
             p.name, ": ", rows, " rows do not split into ", p.rope_heads, " heads of even size");
    auto work = [&](int64_t r0, int64_t r1) {
      std::vector<float> x(static_cast<size_t>(k));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t from = p.rope_heads ? permuted_source_row(r, rows, p.rope_heads) : r;
        row_to_f32(p.src, from, k, x.data());
        row_from_f32(type, x.data(), k, dst.data() + r * out_row);
      }
    };
    const int n = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(rows / 64, 1)));
    std::vector<std::thread> pool;
    std::exception_ptr error;
    std::mutex error_mutex;
    for (int t = 1; t < n; ++t) {
      pool.emplace_back([&, t] {
        try {
          work(rows * t / n, rows * (t + 1) / n);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
      });
    }
    try {
      work(0, rows / n);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
    for (std::thread& th : pool) th.join();
    if (error) std::rethrow_exception(error);
  };
}

// Rank of the integer after `prefix` in `name` ("model.layers.12.x" -> 12), or -1.
int64_t layer_of(const std::string& name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return -1;
  size_t i = prefix.size();
  int64_t v = 0;
  bool any = false;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    v = v * 10 + (name[i++] - '0');
    any = true;
  }
  return any ? v : -1;
}

// A GGUF input: its metadata copied (less the file type, which the target sets), its tensors
// re-encoded in llama.cpp's loader order (non-layer tensors, then layer by layer, by name within
// each), which its quantizer writes and counts layers in. Returns n_gqa.
int plan_from_gguf(const io::GgufFile& g, GgufWriter& w, std::vector<Planned>& plan) {
  for (const std::string& key : g.metadata_keys()) {
    if (key != "general.file_type" && key != "general.quantization_version")
      w.set(key, *g.find(key));
  }
  for (const io::GgufTensorInfo& t : g.tensors()) plan.push_back({t.name, g.tensor(t.name), 0});
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    const int64_t la = layer_of(a.name, "blk."), lb = layer_of(b.name, "blk.");
    return la != lb ? la < lb : a.name < b.name;
  });
  const std::string arch = g.find("general.architecture")->as_string("general.architecture");
  const io::GgufValue* h = g.find(arch + ".attention.head_count");
  const io::GgufValue* kv = g.find(arch + ".attention.head_count_kv");
  if (!h || !kv) return 1;
  return static_cast<int>(h->as_int("head_count") /
                          std::max<int64_t>(kv->as_int("head_count_kv"), 1));
}

// An HF input: metadata converted (hf_to_gguf.hpp), the family's derived tensors first, then the
// weights under their GGUF names in llama.cpp's order (embeddings, layer by layer, then the
// final norm and output), q/k rows permuted where the family's GGUF layout is interleaved.
// Returns n_gqa.
int plan_from_hf(const io::ModelFiles& files, const std::string& in,
                 const GgufWriteOptions& options, GgufWriter& w, std::vector<Planned>& plan) {
  HfConversion conversion = write_hf_hparams(w, files);
  const io::GgufArchitecture& arch = *conversion.arch;
  for (io::DerivedTensor& t : conversion.derived)
    plan.push_back({std::move(t.gguf_name), std::move(t.value), 0});
  if (options.vocab_from.empty()) {
    write_tokenizer(w, std::filesystem::path(in), arch.bpe_pre_tokenizer, files.config);
  } else {
    const io::GgufFile vocab = io::GgufFile::open(options.vocab_from);
    for (const auto& [key, value] : vocab.metadata()) {
      if (key.starts_with("tokenizer.")) w.set(key, value);
    }
  }
  const int heads = static_cast<int>(files.config.at("num_attention_heads").get<int64_t>());
  const int kv_heads = static_cast<int>(files.config.value("num_key_value_heads", int64_t{heads}));
  const bool tied = files.config.value("tie_word_embeddings", false);
  const bool permute_qk = arch.rope_layout == RopeLayout::kInterleaved;
  std::vector<std::string> names = files.weights->names();
  auto rank = [](const std::string& n) -> std::pair<int64_t, std::string> {
    const int64_t layer = layer_of(n, "model.layers.");
    if (n == "model.embed_tokens.weight") return {-1, n};
    if (layer >= 0) return {layer, n};
    return {int64_t{1} << 40, n};
  };
  std::sort(names.begin(), names.end(),
            [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  for (const std::string& hf : names) {
    if (hf == "lm_head.weight" && tied) continue;
    if (hf.ends_with("rotary_emb.inv_freq")) continue;
    const std::string g = io::gguf_name_from_hf(hf, &arch);
    AF_CHECK(g != hf, ErrorCode::kUnsupported, kComponent, files.path, ": tensor '", hf,
             "' has no GGUF name");
    int rope_heads = 0;
    if (permute_qk && hf.ends_with("self_attn.q_proj.weight")) rope_heads = heads;
    if (permute_qk && hf.ends_with("self_attn.k_proj.weight")) rope_heads = kv_heads;
    plan.push_back({g, files.weights->get(hf), rope_heads});
  }
  return heads / std::max(kv_heads, 1);
}

// "blk.3.ffn_down.weight q6_K 1.2 MiB": what a progress display shows for a tensor.
std::string tensor_detail(const Planned& p, DType type) {
  const Shape& s = p.src.shape();
  const int64_t k = s[s.rank() - 1];
  const double kib =
      k == 0 ? 0.0 : static_cast<double>(row_bytes(type, k) * (p.src.numel() / k)) / 1024;
  char detail[160];
  std::snprintf(detail, sizeof detail, "%s %s %.1f %s", p.name.c_str(),
                std::string(name(type)).c_str(), kib >= 1024 ? kib / 1024 : kib,
                kib >= 1024 ? "MiB" : "KiB");
  return detail;
}

// Adds every planned tensor to `w` with the type the mixture gives it.
GgufWriteSummary add_tensors(const std::vector<Planned>& plan, const GgufTarget& target, int n_gqa,
                             int threads, const GgufWriteOptions& options, GgufWriter& w) {
  bool has_output = false;
  int n_attn_v = 0, n_ffn_down = 0;
  for (const Planned& p : plan) {
    has_output |= p.name == "output.weight";
    n_attn_v += contains(p.name, "attn_v.weight");
    n_ffn_down += contains(p.name, "ffn_down");
  }
  TypeChooser chooser(target, n_attn_v, n_ffn_down, n_gqa, !has_output, options.on_note);
  GgufWriteSummary summary;
  summary.tensors = plan.size();
  const auto total = static_cast<int64_t>(plan.size());
  int64_t index = 0;
  for (const Planned& p : plan) {
    const Shape& s = p.src.shape();
    AF_CHECK(s.rank() >= 1 && s.rank() <= 4, ErrorCode::kUnsupported, kComponent, p.name, ": rank ",
             s.rank(), " cannot be stored in GGUF");
    DType type = chooser.choose(p.name, s.rank(), s[s.rank() - 1], p.src.dtype());
    // Tensors kept as they are: F32 stays; 16-bit 1-D tensors (HF norms, biases) become F32
    // as llama.cpp's converter writes them.
    const bool quantizable = TypeChooser::quantizable(p.name, s.rank());
    if (!quantizable && type != DType::F32 && !info(type).quantized) type = DType::F32;
    if (!quantizable && p.src.dtype() == type) {
      w.add_tensor(p.name, p.src);
    } else {
      GgufWriter::Fill fill = make_fill(p, type, threads);
      if (options.on_tensor) {
        fill = [fill, on_tensor = options.on_tensor, index, total,
                text = tensor_detail(p, type)](std::span<std::byte> dst) {
          on_tensor(index, total, text);
          fill(dst);
        };
      }
      w.add_tensor(p.name, type, s, std::move(fill));
    }
    ++index;
    summary.types[std::string(name(type))]++;
  }
  return summary;
}

}  // namespace

GgufWriteSummary write_gguf(const std::string& in, const std::string& out, const GgufTarget& target,
                            const GgufWriteOptions& options) {
  AF_CHECK(!info(target.base).quantized || quant::is_supported(target.base),
           ErrorCode::kUnsupported, kComponent, "type ", name(target.base),
           " is not supported by this build");
  AF_CHECK(options.threads >= 0, ErrorCode::kInvalidArgument, kComponent,
           "threads must be >= 0 (0: all cores), got ", options.threads);
  const int threads = options.threads > 0
                          ? options.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const io::ModelFiles files = models::open_model_files(in);
  GgufWriter w;
  std::vector<Planned> plan;
  const int n_gqa =
      files.gguf ? plan_from_gguf(*files.gguf, w, plan) : plan_from_hf(files, in, options, w, plan);
  GgufWriteSummary summary = add_tensors(plan, target, n_gqa, threads, options, w);
  w.set_u32("general.quantization_version", 2);
  w.set_u32("general.file_type", target.file_type);
  w.write(out);
  return summary;
}

}  // namespace af::convert
