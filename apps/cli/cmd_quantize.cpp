// af-cli quantize IN OUT TYPE (or --type TYPE): q8_0|q4_0|q4_1|q5_0|q5_1|q4_k_m|q4_k_s|q5_k_m|
//                                                q6_k|q2_k|q3_k_m|f16|bf16|f32, any case
// (llama-quantize's aliases q3_k, q4_k, q5_k mean their _m mixtures).
// Writes a GGUF file that llama.cpp loads. IN is a GGUF file (metadata copied, tensors
// re-encoded) or an HF folder (Llama, Mistral, Qwen2, Qwen3, MiniCPM; converted with llama.cpp's
// metadata keys and tensor names, q/k rows of Llama-family models permuted to the interleaved RoPE
// layout, llama3 RoPE scaling as a rope_freqs.weight tensor, MiniCPM's scales as minicpm.*_scale
// keys and MiniCPM4's LongRoPE factors as rope_factors_{long,short}.weight, tokenizer written from
// tokenizer.json). Per-tensor types follow llama.cpp's mixtures (llama_model_quantize): norms and
// 1-D tensors stay F32, the output / tied embedding gets Q6_K, attn_v and ffn_down get more bits in
// some layers for *_k_m, and a row that is not a multiple of a K-quant's 256 falls back to a
// 32-block type.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <string>
#include <thread>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/io/gguf_writer.hpp"
#include "af/io/model_files.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

constexpr const char* kComponent = "quantize";
using io::GgufWriter;

// A target: the default tensor type and llama.cpp's llama_ftype number (general.file_type),
// from the one spelling set `run --quantize` uses too (cli_common.hpp).
using Mixture = QuantType;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// llama.cpp's "use more bits" layers: the first and last eighth, and every third in between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Chooses tensor types the way llama_model_quantize does for the mixtures above. Layer indices
// come from counters over the tensors in file order, as in llama.cpp.
class TypeChooser {
 public:
  TypeChooser(const Mixture& mix, int n_attn_v, int n_ffn_down, int n_gqa, bool tied)
      : mix_(mix), n_attn_v_(n_attn_v), n_ffn_down_(n_ffn_down), n_gqa_(n_gqa), tied_(tied) {}

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
  static DType fallback(const std::string& name, int64_t row, DType t) {
    if (row % info(t).block_size == 0) return t;
    DType f = quant::fallback_type(t).value_or(DType::F16);
    if (row % info(f).block_size != 0) f = DType::F16;
    std::fprintf(stderr, "[af-cli quantize] %s: row of %lld is not a multiple of %s's %lld: %s\n",
                 name.c_str(), static_cast<long long>(row), std::string(af::name(t)).c_str(),
                 static_cast<long long>(info(t).block_size), std::string(af::name(f)).c_str());
    return f;
  }

  const Mixture& mix_;
  int n_attn_v_, n_ffn_down_, n_gqa_;
  bool tied_;
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

// ---- HF folder -> GGUF metadata ----------------------------------------------------------------

struct HfArch {
  std::string_view hf_class, gguf_arch;
  bool permute_qk;
};
constexpr HfArch kHfArchs[] = {
    {"LlamaForCausalLM", "llama", true},
    {"Qwen2ForCausalLM", "qwen2", false},
    {"Qwen3ForCausalLM", "qwen3", false},
    {"MistralForCausalLM", "llama", true},
    {"MiniCPMForCausalLM", "minicpm", true},
    // MiniCPM4 checkpoints use MiniCPMForCausalLM; this name is what our loader also accepts.
    {"MiniCPM4ForCausalLM", "minicpm", true},
};

int64_t get_int(const nlohmann::json& c, const char* key, const std::string& origin) {
  auto it = c.find(key);
  AF_CHECK(it != c.end() && it->is_number_integer(), ErrorCode::kFormat, kComponent, origin,
           ": config.json needs integer \"", key, "\"");
  return it->get<int64_t>();
}

double get_number(const nlohmann::json& c, const char* key, double fallback) {
  auto it = c.find(key);
  return it != c.end() && it->is_number() ? it->get<double>() : fallback;
}

// tokenizer.json (BPE, byte-level or with byte fallback) -> tokenizer.ggml.* keys.
void write_tokenizer(GgufWriter& w, const std::filesystem::path& dir, const std::string& arch,
                     const nlohmann::json& config) {
  const auto tj_path = dir / "tokenizer.json";
  AF_CHECK(std::filesystem::exists(tj_path), ErrorCode::kUnsupported, kComponent, dir.string(),
           ": no tokenizer.json (needed to write the GGUF vocabulary)");
  const nlohmann::json tj = io::read_json_file(tj_path.string());
  const std::string origin = tj_path.string();
  const auto& model = tj.at("model");
  AF_CHECK(model.value("type", "") == "BPE", ErrorCode::kUnsupported, kComponent, origin,
           ": only BPE tokenizers are supported, got \"", model.value("type", ""), "\"");
  const bool byte_fallback = model.value("byte_fallback", false);
  std::map<int64_t, std::string> by_id;
  for (const auto& [piece, id] : model.at("vocab").items()) by_id[id.get<int64_t>()] = piece;
  std::map<int64_t, bool> special;  // added tokens: id -> special
  if (tj.contains("added_tokens")) {
    for (const auto& a : tj.at("added_tokens")) {
      const int64_t id = a.at("id").get<int64_t>();
      by_id[id] = a.at("content").get<std::string>();
      special[id] = a.value("special", false);
    }
  }
  const int64_t vocab = get_int(config, "vocab_size", origin);
  const int64_t n = std::max<int64_t>(vocab, by_id.empty() ? 0 : by_id.rbegin()->first + 1);
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int32_t> types(static_cast<size_t>(n), 1);  // NORMAL
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
      types[static_cast<size_t>(i)] = 5;  // UNUSED
      continue;
    }
    tokens[static_cast<size_t>(i)] = it->second;
    auto sp = special.find(i);
    if (sp != special.end()) {
      types[static_cast<size_t>(i)] = sp->second ? 3 : 4;  // CONTROL : USER_DEFINED
    } else if (byte_fallback && it->second.size() == 6 && it->second.starts_with("<0x") &&
               it->second.ends_with(">")) {
      types[static_cast<size_t>(i)] = 6;  // BYTE
    }
  }
  std::vector<std::string> merges;
  if (model.contains("merges")) {
    for (const auto& m : model.at("merges")) {
      merges.push_back(m.is_string()
                           ? m.get<std::string>()
                           : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
  }
  if (byte_fallback) {
    // SentencePiece-style vocabulary: llama.cpp merges by score, so a token made by merge r
    // scores -r (earlier merges win); other tokens score 0.
    std::vector<float> scores(static_cast<size_t>(n), 0.0f);
    std::map<std::string, int64_t> id_of;
    for (int64_t i = 0; i < n; ++i) id_of[tokens[static_cast<size_t>(i)]] = i;
    for (size_t r = 0; r < merges.size(); ++r) {
      const size_t sp = merges[r].find(' ');
      if (sp == std::string::npos) continue;
      auto it = id_of.find(merges[r].substr(0, sp) + merges[r].substr(sp + 1));
      if (it != id_of.end()) scores[static_cast<size_t>(it->second)] = -static_cast<float>(r);
    }
    for (auto& [id, is_special] : special) {
      if (id < n) scores[static_cast<size_t>(id)] = 0.0f;
    }
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("tokenizer.ggml.pre", "default");
    w.set("tokenizer.ggml.tokens", io::gguf_string_array(tokens));
    w.set("tokenizer.ggml.scores", io::gguf_f32_array(scores));
    w.set("tokenizer.ggml.token_type", io::gguf_i32_array(types));
  } else {
    // Byte-level BPE. tokenizer.ggml.pre selects llama.cpp's pre-tokenizer regex; its converter
    // recognises it from a hash of the tokenizer's output, here the architecture decides.
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", arch == "qwen2" || arch == "qwen3" ? "qwen2" : "llama-bpe");
    w.set("tokenizer.ggml.tokens", io::gguf_string_array(tokens));
    w.set("tokenizer.ggml.token_type", io::gguf_i32_array(types));
    w.set("tokenizer.ggml.merges", io::gguf_string_array(merges));
  }
  // Special ids and the chat template from tokenizer_config.json / config.json.
  nlohmann::json tc = nlohmann::json::object();
  if (std::filesystem::exists(dir / "tokenizer_config.json"))
    tc = io::read_json_file((dir / "tokenizer_config.json").string());
  auto id_of_token = [&](const nlohmann::json& v) -> int64_t {
    std::string text;
    if (v.is_string()) text = v.get<std::string>();
    if (v.is_object() && v.contains("content")) text = v.at("content").get<std::string>();
    for (int64_t i = 0; i < n && !text.empty(); ++i)
      if (tokens[static_cast<size_t>(i)] == text) return i;
    return -1;
  };
  auto set_id = [&](const char* key, const char* tc_key, const char* cfg_key) {
    int64_t id = -1;
    if (tc.contains(tc_key)) id = id_of_token(tc.at(tc_key));
    if (id < 0 && cfg_key && config.contains(cfg_key) && config.at(cfg_key).is_number_integer())
      id = config.at(cfg_key).get<int64_t>();
    if (id >= 0) w.set_u32(key, static_cast<uint32_t>(id));
  };
  set_id("tokenizer.ggml.bos_token_id", "bos_token", "bos_token_id");
  set_id("tokenizer.ggml.eos_token_id", "eos_token", "eos_token_id");
  set_id("tokenizer.ggml.unknown_token_id", "unk_token", nullptr);
  set_id("tokenizer.ggml.padding_token_id", "pad_token", nullptr);
  if (tc.contains("add_bos_token") && tc.at("add_bos_token").is_boolean())
    w.set_bool("tokenizer.ggml.add_bos_token", tc.at("add_bos_token").get<bool>());
  if (tc.contains("add_eos_token") && tc.at("add_eos_token").is_boolean())
    w.set_bool("tokenizer.ggml.add_eos_token", tc.at("add_eos_token").get<bool>());
  if (tc.contains("chat_template") && tc.at("chat_template").is_string()) {
    w.set_string("tokenizer.chat_template", tc.at("chat_template").get<std::string>());
  } else if (std::filesystem::exists(dir / "chat_template.jinja")) {
    std::FILE* f = std::fopen((dir / "chat_template.jinja").string().c_str(), "rb");
    if (f) {
      std::string text;
      char buf[4096];
      size_t got;
      while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
      std::fclose(f);
      w.set_string("tokenizer.chat_template", text);
    }
  }
}

// A required positive number of the rope settings (llama3 scaling).
double rope_number(const nlohmann::json& rope, const nlohmann::json& config, const char* key,
                   const std::string& origin) {
  double v = get_number(rope, key, 0.0);
  // Like the converter, original_max_position_embeddings may sit at the top level.
  if (v == 0.0 && std::string_view(key) == "original_max_position_embeddings")
    v = get_number(config, key, 0.0);
  AF_CHECK(v > 0 && std::isfinite(v), ErrorCode::kFormat, kComponent, origin,
           ": llama3 RoPE scaling needs a positive number \"", key, "\"");
  return v;
}

// The per-frequency divisors of llama3 RoPE scaling, stored as rope_freqs.weight (llama.cpp
// divides each base frequency by its entry). Computed in float32 in the order of operations of
// llama.cpp's converter (a torch float32 tensor against Python floats), so the tensor matches
// the one it writes.
std::vector<float> llama3_rope_divisors(const nlohmann::json& rope, const nlohmann::json& config,
                                        double theta, int64_t head_dim, const std::string& origin) {
  const double factor = rope_number(rope, config, "factor", origin);
  const double low = rope_number(rope, config, "low_freq_factor", origin);
  const double high = rope_number(rope, config, "high_freq_factor", origin);
  const double old_ctx = rope_number(rope, config, "original_max_position_embeddings", origin);
  AF_CHECK(high > low, ErrorCode::kFormat, kComponent, origin,
           ": llama3 RoPE scaling needs high_freq_factor > low_freq_factor");
  const float low_wavelen = static_cast<float>(old_ctx / low);
  const float high_wavelen = static_cast<float>(old_ctx / high);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  std::vector<float> divisors;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float freq = 1.0f / std::pow(static_cast<float>(theta), exponent);
    const float wavelen = (1.0f / freq) * two_pi;
    if (wavelen < high_wavelen) {
      divisors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      divisors.push_back(static_cast<float>(factor));
    } else {
      const float smooth =
          ((1.0f / wavelen) * static_cast<float>(old_ctx) - static_cast<float>(low)) /
          static_cast<float>(high - low);
      divisors.push_back(1.0f / ((1.0f - smooth) / static_cast<float>(factor) + smooth));
    }
  }
  return divisors;
}

// What an HF folder converts to: its GGUF architecture and the tensors the converter adds
// (rope_freqs.weight for llama3 RoPE scaling), which come first in the file.
struct HfConversion {
  const HfArch* arch = nullptr;
  std::vector<Planned> extra_tensors;
};

// HF config.json -> llama.cpp's hyperparameter keys (and the tensors derived from them).
HfConversion write_hf_hparams(GgufWriter& w, const io::ModelFiles& files) {
  const nlohmann::json& c = files.config;
  const std::string origin = files.path + "/config.json";
  std::string cls;
  if (c.contains("architectures") && c.at("architectures").is_array() &&
      !c.at("architectures").empty() && c.at("architectures").at(0).is_string())
    cls = c.at("architectures").at(0).get<std::string>();
  HfConversion out;
  for (const HfArch& a : kHfArchs) {
    if (a.hf_class == cls) out.arch = &a;
  }
  AF_CHECK(out.arch != nullptr, ErrorCode::kUnsupported, kComponent, origin, ": architecture '",
           cls,
           "' cannot be converted to GGUF (LlamaForCausalLM, MistralForCausalLM, "
           "Qwen2ForCausalLM, Qwen3ForCausalLM, MiniCPMForCausalLM, MiniCPM4ForCausalLM)");
  const std::string_view arch = out.arch->gguf_arch;
  const std::string p = std::string(arch) + ".";
  const int64_t hidden = get_int(c, "hidden_size", origin);
  const int64_t heads = get_int(c, "num_attention_heads", origin);
  const int64_t layers = get_int(c, "num_hidden_layers", origin);
  AF_CHECK(heads > 0 && layers > 0, ErrorCode::kFormat, kComponent, origin,
           ": num_attention_heads and num_hidden_layers must be positive");
  const int64_t kv_heads =
      c.contains("num_key_value_heads") ? get_int(c, "num_key_value_heads", origin) : heads;
  const int64_t head_dim = c.contains("head_dim") && c.at("head_dim").is_number_integer()
                               ? c.at("head_dim").get<int64_t>()
                               : hidden / heads;
  // transformers 5 keeps theta and scaling in rope_parameters, 4.x in rope_theta + rope_scaling;
  // the converter reads the first of the two that is present.
  const nlohmann::json* rope = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!rope && c.contains(key) && c.at(key).is_object()) rope = &c.at(key);
  }
  double theta = get_number(c, "rope_theta", 10000.0);
  std::string rope_type = "default";
  if (rope) {
    theta = get_number(*rope, "rope_theta", theta);
    const nlohmann::json& t =
        rope->contains("rope_type") ? rope->at("rope_type") : rope->value("type", nlohmann::json());
    if (t.is_string()) rope_type = t.get<std::string>();
  }
  const bool llama3 = rope_type == "llama3" && arch == "llama";
  const bool longrope = rope_type == "longrope" && arch == "minicpm";
  AF_CHECK(rope_type == "default" || rope_type == "linear" || llama3 || longrope,
           ErrorCode::kUnsupported, kComponent, origin, ": RoPE scaling '", rope_type,
           "' cannot be converted to GGUF for ", arch, " here (default, linear",
           arch == "llama"     ? ", llama3)"
           : arch == "minicpm" ? ", longrope)"
                               : ")");
  if (rope_type == "linear") {
    w.set_string(p + "rope.scaling.type", "linear");
    w.set_f32(p + "rope.scaling.factor", static_cast<float>(get_number(*rope, "factor", 1.0)));
  }
  if (llama3) {
    const std::vector<float> divisors = llama3_rope_divisors(*rope, c, theta, head_dim, origin);
    out.extra_tensors.push_back(
        {"rope_freqs.weight",
         Tensor::from_f32(Shape{static_cast<int64_t>(divisors.size())}, divisors.data()), 0});
  }
  if (longrope) {
    // MiniCPM4: the HF code picks long_factor, and scales cos/sin by
    // sqrt(1 + ln(max / orig) / ln(orig)), once max_position_embeddings exceeds the original
    // context. The converter writes neither that scale nor the original context, and llama.cpp
    // uses the short factors up to context_length, so only the short-factor case converts.
    const int64_t max_pos = c.value("max_position_embeddings", int64_t{2048});
    const double orig = get_number(*rope, "original_max_position_embeddings",
                                   get_number(c, "original_max_position_embeddings", 0.0));
    AF_CHECK(orig > 0, ErrorCode::kFormat, kComponent, origin,
             ": longrope RoPE scaling needs \"original_max_position_embeddings\"");
    AF_CHECK(static_cast<double>(max_pos) <= orig, ErrorCode::kUnsupported, kComponent, origin,
             ": longrope with max_position_embeddings ", max_pos,
             " > original_max_position_embeddings ", orig,
             " (long factors and a cos/sin scale) cannot be expressed in GGUF for llama.cpp");
    w.set_string(p + "rope.scaling.type", "longrope");
    for (const char* which : {"long", "short"}) {
      const std::string key = std::string(which) + "_factor";
      const auto it = rope->find(key);
      AF_CHECK(it != rope->end() && it->is_array() &&
                   static_cast<int64_t>(it->size()) == (hidden / heads) / 2,
               ErrorCode::kFormat, kComponent, origin, ": longrope RoPE scaling needs \"", key,
               "\" as a list of ", (hidden / heads) / 2, " numbers");
      std::vector<float> factors;
      for (const nlohmann::json& f : *it) {
        AF_CHECK(f.is_number() && f.get<double>() > 0, ErrorCode::kFormat, kComponent, origin,
                 ": \"", key, "\" holds a non-positive or non-numeric entry ", f.dump());
        factors.push_back(f.get<float>());
      }
      out.extra_tensors.push_back(
          {"rope_factors_" + std::string(which) + ".weight",
           Tensor::from_f32(Shape{static_cast<int64_t>(factors.size())}, factors.data()), 0});
    }
  }
  std::string name = std::filesystem::path(files.path).filename().string();
  if (name.empty()) name = std::filesystem::path(files.path).parent_path().filename().string();
  w.set_string("general.architecture", std::string(arch));
  w.set_string("general.name", name);
  w.set_u32(p + "block_count", static_cast<uint32_t>(layers));
  w.set_u32(p + "context_length",
            static_cast<uint32_t>(c.value("max_position_embeddings", int64_t{2048})));
  w.set_u32(p + "embedding_length", static_cast<uint32_t>(hidden));
  w.set_u32(p + "feed_forward_length",
            static_cast<uint32_t>(get_int(c, "intermediate_size", origin)));
  w.set_u32(p + "attention.head_count", static_cast<uint32_t>(heads));
  w.set_u32(p + "attention.head_count_kv", static_cast<uint32_t>(kv_heads));
  w.set_f32(p + "rope.freq_base", static_cast<float>(theta));
  w.set_f32(p + "attention.layer_norm_rms_epsilon",
            static_cast<float>(get_number(c, "rms_norm_eps", 1e-6)));
  w.set_u32(p + "attention.key_length", static_cast<uint32_t>(head_dim));
  w.set_u32(p + "attention.value_length", static_cast<uint32_t>(head_dim));
  w.set_u32(p + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  if (arch == "llama")
    w.set_u32(p + "vocab_size", static_cast<uint32_t>(get_int(c, "vocab_size", origin)));
  // Mistral's window (llama.cpp's converter drops it; our loader reads it back).
  if (arch == "llama" && c.contains("sliding_window") && c.at("sliding_window").is_number_integer())
    w.set_u32(p + "attention.sliding_window",
              static_cast<uint32_t>(get_int(c, "sliding_window", origin)));
  if (arch == "minicpm") {
    // MiniCPM's muP scales. llama.cpp falls back to MiniCPM-2B's values when a key is missing,
    // so all three are always written, with the defaults of our own HF loader (no scaling).
    const double scale_emb = get_number(c, "scale_emb", 1.0);
    const double scale_depth = get_number(c, "scale_depth", 1.0);
    const double dim_model_base = get_number(c, "dim_model_base", static_cast<double>(hidden));
    AF_CHECK(scale_emb > 0 && scale_depth > 0 && dim_model_base > 0, ErrorCode::kFormat, kComponent,
             origin, ": scale_emb, scale_depth and dim_model_base must be positive");
    w.set_f32(p + "embedding_scale", static_cast<float>(scale_emb));
    w.set_f32(p + "residual_scale",
              static_cast<float>(scale_depth / std::sqrt(static_cast<double>(layers))));
    // llama.cpp divides the logits by logit_scale (as MiniCPM divides the final hidden state).
    w.set_f32(p + "logit_scale", static_cast<float>(static_cast<double>(hidden) / dim_model_base));
  }
  return out;
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

}  // namespace

Command add_quantize(CLI::App& app) {
  struct Options {
    std::string in, out, type, type_flag, vocab_from;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* sub =
      app.add_subcommand("quantize", "Write a (quantized) GGUF file from a GGUF or HF model");
  sub->add_option("IN", o->in, "GGUF file or HF folder")->required();
  sub->add_option("OUT", o->out, "output .gguf path")->required();
  sub->add_option("TYPE", o->type, "target type, as llama-quantize's third argument");
  sub->add_option("--type", o->type_flag, "target type (or TYPE): " + quant_type_names());
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--vocab-from", o->vocab_from,
                  "HF input: copy the tokenizer.* keys of this GGUF file instead of reading "
                  "tokenizer.json");
  return [o]() {
    require_flag(o->type.empty() || o->type_flag.empty() || o->type == o->type_flag,
                 "TYPE and --type", "disagree ('" + o->type + "' vs '" + o->type_flag + "')");
    require_flag(!o->type.empty() || !o->type_flag.empty(), "TYPE (or --type)",
                 "is required: " + quant_type_names());
    const Mixture& mix = o->type.empty() ? find_quant_type(o->type_flag, "--type")
                                         : find_quant_type(o->type, "TYPE");
    require_flag(o->threads >= 0, "-t/--threads", "must be >= 0 (0: all cores)");
    AF_CHECK(!info(mix.base).quantized || quant::is_supported(mix.base), ErrorCode::kUnsupported,
             kComponent, "type ", name(mix.base), " is not supported by this build");
    const int threads = o->threads > 0
                            ? o->threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    const io::ModelFiles files = io::open_model_files(o->in);
    io::GgufWriter w;
    std::vector<Planned> plan;
    int n_gqa = 1;
    if (files.gguf) {
      const io::GgufFile& g = *files.gguf;
      for (const std::string& key : g.metadata_keys()) {
        if (key != "general.file_type" && key != "general.quantization_version")
          w.set(key, *g.find(key));
      }
      for (const io::GgufTensorInfo& t : g.tensors()) plan.push_back({t.name, g.tensor(t.name), 0});
      // llama.cpp's loader order (non-layer tensors, then layer by layer, by name within each),
      // which its quantizer writes and counts layers in.
      std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
        const int64_t la = layer_of(a.name, "blk."), lb = layer_of(b.name, "blk.");
        return la != lb ? la < lb : a.name < b.name;
      });
      const std::string arch = g.find("general.architecture")->as_string("general.architecture");
      const io::GgufValue* h = g.find(arch + ".attention.head_count");
      const io::GgufValue* kv = g.find(arch + ".attention.head_count_kv");
      if (h && kv)
        n_gqa = static_cast<int>(h->as_int("head_count") /
                                 std::max<int64_t>(kv->as_int("head_count_kv"), 1));
    } else {
      HfConversion conversion = write_hf_hparams(w, files);
      const HfArch& arch = *conversion.arch;
      plan = std::move(conversion.extra_tensors);
      if (o->vocab_from.empty()) {
        write_tokenizer(w, std::filesystem::path(o->in), std::string(arch.gguf_arch), files.config);
      } else {
        const io::GgufFile vocab = io::GgufFile::open(o->vocab_from);
        for (const auto& [key, value] : vocab.metadata()) {
          if (key.starts_with("tokenizer.")) w.set(key, value);
        }
      }
      const int heads = static_cast<int>(files.config.at("num_attention_heads").get<int64_t>());
      const int kv_heads =
          static_cast<int>(files.config.value("num_key_value_heads", int64_t{heads}));
      n_gqa = heads / std::max(kv_heads, 1);
      const bool tied = files.config.value("tie_word_embeddings", false);
      std::vector<std::string> names = files.weights->names();
      // llama.cpp's order: embeddings, then layer by layer, then the final norm and output.
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
        const std::string g = io::gguf_name_from_hf(hf);
        AF_CHECK(g != hf, ErrorCode::kUnsupported, kComponent, files.path, ": tensor '", hf,
                 "' has no GGUF name");
        int rope_heads = 0;
        if (arch.permute_qk && hf.ends_with("self_attn.q_proj.weight")) rope_heads = heads;
        if (arch.permute_qk && hf.ends_with("self_attn.k_proj.weight")) rope_heads = kv_heads;
        plan.push_back({g, files.weights->get(hf), rope_heads});
      }
    }
    bool has_output = false;
    int n_attn_v = 0, n_ffn_down = 0;
    for (const Planned& p : plan) {
      has_output |= p.name == "output.weight";
      n_attn_v += contains(p.name, "attn_v.weight");
      n_ffn_down += contains(p.name, "ffn_down");
    }
    TypeChooser chooser(mix, n_attn_v, n_ffn_down, n_gqa, !has_output);
    std::map<std::string, int> counts;
    // Per tensor on a terminal: "quantizing [###...] 40% blk.3.ffn_down.weight q6_K 1.2 MB".
    auto bar = std::make_shared<ProgressBar>("quantizing");
    const auto total = static_cast<int64_t>(plan.size());
    int64_t index = 0;
    for (const Planned& p : plan) {
      ++index;
      const Shape& s = p.src.shape();
      AF_CHECK(s.rank() >= 1 && s.rank() <= 4, ErrorCode::kUnsupported, kComponent, p.name,
               ": rank ", s.rank(), " cannot be stored in GGUF");
      DType type = chooser.choose(p.name, s.rank(), s[s.rank() - 1], p.src.dtype());
      // Tensors kept as they are: F32 stays; 16-bit 1-D tensors (HF norms, biases) become F32
      // as llama.cpp's converter writes them.
      if (!TypeChooser::quantizable(p.name, s.rank()) && type != DType::F32 &&
          !info(type).quantized)
        type = DType::F32;
      if (!TypeChooser::quantizable(p.name, s.rank()) && p.src.dtype() == type) {
        w.add_tensor(p.name, p.src);
      } else {
        GgufWriter::Fill fill = make_fill(p, type, threads);
        if (bar->enabled()) {
          const int64_t k = s[s.rank() - 1];
          const double kib =
              k == 0 ? 0.0 : static_cast<double>(row_bytes(type, k) * (p.src.numel() / k)) / 1024;
          char detail[160];
          std::snprintf(detail, sizeof detail, "%s %s %.1f %s", p.name.c_str(),
                        std::string(name(type)).c_str(), kib >= 1024 ? kib / 1024 : kib,
                        kib >= 1024 ? "MiB" : "KiB");
          fill = [fill, bar, index, total, text = std::string(detail)](std::span<std::byte> dst) {
            bar->update(index - 1, total, text);
            fill(dst);
          };
        }
        w.add_tensor(p.name, type, s, std::move(fill));
      }
      counts[std::string(name(type))]++;
    }
    w.set_u32("general.quantization_version", 2);
    w.set_u32("general.file_type", mix.file_type);
    w.write(o->out);
    bar->finish();
    std::string summary;
    for (const auto& [t, n] : counts) summary += " " + t + ":" + std::to_string(n);
    std::fprintf(stderr, "[af-cli quantize] wrote %s (%zu tensors:%s)\n", o->out.c_str(),
                 plan.size(), summary.c_str());
    return 0;
  };
}

}  // namespace af::cli
