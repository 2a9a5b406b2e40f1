#include "convert/hf_to_gguf.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "models/registry.hpp"

namespace af::convert {
namespace {

constexpr const char* kComponent = "convert";
using io::GgufWriter;

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

// "LlamaForCausalLM, MistralForCausalLM, ...": the classes of the families that convert.
std::string convertible_classes() {
  std::string out;
  for (const models::ArchitectureInfo* a : models::architectures()) {
    if (!a->gguf || !a->gguf->gguf_from_config) continue;
    for (std::string_view cls : a->hf_classes) out += (out.empty() ? "" : ", ") + std::string(cls);
  }
  return out;
}

}  // namespace

// tokenizer.json (BPE, byte-level or with byte fallback) -> tokenizer.ggml.* keys.
void write_tokenizer(GgufWriter& w, const std::filesystem::path& dir, std::string_view bpe_pre,
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
    // recognises it from a hash of the tokenizer's output, here the family decides
    // (GgufArchitecture::bpe_pre_tokenizer).
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", std::string(bpe_pre));
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

// HF config.json -> llama.cpp's hyperparameter keys (and the tensors derived from them).
HfConversion write_hf_hparams(GgufWriter& w, const io::ModelFiles& files) {
  const nlohmann::json& c = files.config;
  const std::string origin = files.path + "/config.json";
  std::string cls;
  if (c.contains("architectures") && c.at("architectures").is_array() &&
      !c.at("architectures").empty() && c.at("architectures").at(0).is_string())
    cls = c.at("architectures").at(0).get<std::string>();
  HfConversion out;
  const models::ArchitectureInfo* family = models::find_architecture(cls);
  if (family && family->gguf && family->gguf->gguf_from_config) out.arch = family->gguf;
  AF_CHECK(out.arch != nullptr, ErrorCode::kUnsupported, kComponent, origin, ": architecture '",
           cls, "' cannot be converted to GGUF (", convertible_classes(), ")");
  const std::string arch(out.arch->gguf_name);
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
  const std::span<const std::string_view> extra = out.arch->extra_rope_types;
  std::string known = "default, linear";
  for (std::string_view t : extra) known += ", " + std::string(t);
  AF_CHECK(rope_type == "default" || rope_type == "linear" ||
               std::find(extra.begin(), extra.end(), rope_type) != extra.end(),
           ErrorCode::kUnsupported, kComponent, origin, ": RoPE scaling '", rope_type,
           "' cannot be converted to GGUF for ", arch, " here (", known, ")");
  if (rope_type == "linear") {
    w.set_string(p + "rope.scaling.type", "linear");
    w.set_f32(p + "rope.scaling.factor", static_cast<float>(get_number(*rope, "factor", 1.0)));
  }
  std::string name = std::filesystem::path(files.path).filename().string();
  if (name.empty()) name = std::filesystem::path(files.path).parent_path().filename().string();
  w.set_string("general.architecture", arch);
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
  // The family's own keys and derived tensors (its GgufArchitecture, in its model file).
  const io::GgufConversionInput in{c,      origin,   p,    hidden,    heads,
                                   layers, head_dim, rope, rope_type, theta};
  out.derived = out.arch->gguf_from_config(in, w);
  return out;
}

}  // namespace af::convert
