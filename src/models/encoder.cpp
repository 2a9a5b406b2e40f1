// Encoders for sentence embeddings: the sentence-transformers configuration files, and decoder
// LMs seen through their final hidden states.
#include "af/models/encoder.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "af/models/model_files.hpp"
#include "io/json_util.hpp"
#include "models/registry.hpp"

namespace af::models {

const char* pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::kMean:
      return "mean";
    case Pooling::kCls:
      return "cls";
    case Pooling::kLast:
      return "last";
  }
  return "?";
}

std::optional<Pooling> pooling_from_name(std::string_view name) {
  if (name == "mean") return Pooling::kMean;
  if (name == "cls") return Pooling::kCls;
  if (name == "last") return Pooling::kLast;
  return std::nullopt;
}

namespace {

namespace fs = std::filesystem;
constexpr const char* kComponent = "embedding";
// sentence-transformers' configuration files are a few hundred bytes; a larger one is not one.
constexpr std::uintmax_t kMaxConfigBytes = 1 << 20;

std::optional<nlohmann::json> read_json_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  const std::uintmax_t size = fs::file_size(file, ec);
  AF_CHECK(!ec && size <= kMaxConfigBytes, ErrorCode::kFormat, kComponent, file.string(),
           ": larger than ", kMaxConfigBytes, " bytes");
  std::ifstream in(file, std::ios::binary);
  AF_CHECK(in.good(), ErrorCode::kIo, kComponent, file.string(), ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return io::detail::parse_json(text.str(), file.string(), kComponent);
}

bool flag(const nlohmann::json& config, const char* key, const fs::path& file) {
  if (!config.contains(key)) return false;
  AF_CHECK(config[key].is_boolean(), ErrorCode::kFormat, kComponent, file.string(), ": field \"",
           key, "\" must be true or false");
  return config[key].get<bool>();
}

// 1_Pooling/config.json: exactly one of the modes we compute may be set.
Pooling read_pooling(const fs::path& file, Pooling fallback) {
  const std::optional<nlohmann::json> config = read_json_file(file);
  if (!config) return fallback;
  AF_CHECK(config->is_object(), ErrorCode::kFormat, kComponent, file.string(),
           ": expected a JSON object");
  for (const char* unsupported : {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                                  "pooling_mode_weightedmean_tokens"}) {
    AF_CHECK(!flag(*config, unsupported, file), ErrorCode::kUnsupported, kComponent, file.string(),
             ": ", unsupported, " is not supported (mean, cls and lasttoken are)");
  }
  const bool mean = flag(*config, "pooling_mode_mean_tokens", file);
  const bool cls = flag(*config, "pooling_mode_cls_token", file);
  const bool last = flag(*config, "pooling_mode_lasttoken", file);
  AF_CHECK(mean + cls + last <= 1, ErrorCode::kUnsupported, kComponent, file.string(),
           ": several pooling modes at once are not supported");
  if (cls) return Pooling::kCls;
  if (last) return Pooling::kLast;
  if (mean) return Pooling::kMean;
  return fallback;
}

}  // namespace

EmbeddingDefaults read_embedding_defaults(const std::string& path, EmbeddingDefaults d) {
  const fs::path folder = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  if (const auto st = read_json_file(folder / "sentence_bert_config.json")) {
    if (st->contains("max_seq_length") && !(*st)["max_seq_length"].is_null()) {
      const auto& v = (*st)["max_seq_length"];
      AF_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, ErrorCode::kFormat, kComponent,
               (folder / "sentence_bert_config.json").string(),
               ": field \"max_seq_length\" must be a positive integer");
      d.max_tokens = d.max_tokens > 0 ? std::min(d.max_tokens, v.get<int64_t>()) : v.get<int64_t>();
    }
  }
  const fs::path modules_file = folder / "modules.json";
  const std::optional<nlohmann::json> modules = read_json_file(modules_file);
  if (!modules) return d;
  AF_CHECK(modules->is_array(), ErrorCode::kFormat, kComponent, modules_file.string(),
           ": expected a JSON array of modules");
  for (size_t i = 0; i < modules->size(); ++i) {
    const nlohmann::json& m = (*modules)[i];
    AF_CHECK(m.is_object() && m.contains("type") && m["type"].is_string(), ErrorCode::kFormat,
             kComponent, modules_file.string(), ": module ", i, " has no \"type\" string");
    const std::string type = m["type"].get<std::string>();
    const std::string sub =
        m.contains("path") && m["path"].is_string() ? m["path"].get<std::string>() : std::string();
    AF_CHECK(sub.find("..") == std::string::npos && (sub.empty() || sub[0] != '/'),
             ErrorCode::kFormat, kComponent, modules_file.string(), ": module ", i, " path \"", sub,
             "\" leaves the model folder");
    if (type.ends_with("models.Pooling")) {
      d.pooling = read_pooling(folder / sub / "config.json", d.pooling);
    } else if (type.ends_with("models.Normalize")) {
      d.normalize = true;
    } else if (type.ends_with("models.Dense")) {
      fail(ErrorCode::kUnsupported, kComponent, modules_file.string(), ": module ", i, " (", type,
           ") is not supported (Transformer, Pooling and Normalize are)");
    }
  }
  return d;
}

namespace {

// A decoder LM's final-norm hidden states, each sequence in a fresh KV cache of its own length.
class DecoderEncoder final : public EncoderModel {
 public:
  DecoderEncoder(std::unique_ptr<CausalLM> lm, EmbeddingDefaults defaults)
      : lm_(std::move(lm)), defaults_(defaults) {}

  int64_t hidden_size() const override { return lm_->config().hidden_size; }
  int64_t vocab_size() const override { return lm_->config().vocab_size; }
  const ModelInfo& info() const override { return lm_->info(); }
  const EmbeddingDefaults& defaults() const override { return defaults_; }

  std::vector<float> hidden_states(std::span<const std::span<const int32_t>> seqs) override {
    std::vector<std::unique_ptr<SequenceState>> states;
    std::vector<BatchItem> items;
    for (size_t i = 0; i < seqs.size(); ++i) {
      AF_CHECK(!seqs[i].empty(), ErrorCode::kInvalidArgument, kComponent, "input ", i,
               " has no tokens");
      AF_CHECK(std::ssize(seqs[i]) <= max_tokens(), ErrorCode::kOutOfRange, kComponent, "input ", i,
               " has ", seqs[i].size(), " tokens, more than the model's maximum of ", max_tokens());
      states.push_back(lm_->new_sequence(std::ssize(seqs[i])));
      items.push_back({states.back().get(), seqs[i], /*all_logits=*/true});
    }
    if (items.empty()) return {};
    return lm_->hidden_batch(items);
  }

 private:
  std::unique_ptr<CausalLM> lm_;
  EmbeddingDefaults defaults_;
};

}  // namespace

bool is_encoder_model(const std::string& path) {
  const io::ModelFiles files = open_model_files(path);
  const io::HfConfig config(files.config, path);
  return find_encoder_factory(config.architecture()) != nullptr;
}

std::unique_ptr<EncoderModel> load_encoder(const std::string& path, const LoadOptions& options) {
  io::ModelFiles files = open_model_files(path);
  io::HfConfig config(files.config,
                      files.format == "gguf" ? path + " (GGUF metadata)" : path + " (config.json)");
  if (EncoderFactory factory = find_encoder_factory(config.architecture())) {
    return factory(std::move(files), config, options);
  }
  std::unique_ptr<CausalLM> lm = load(path, options);
  EmbeddingDefaults defaults;
  defaults.pooling = Pooling::kLast;
  defaults.max_tokens = lm->info().context_length;
  if (files.format != "gguf") defaults = read_embedding_defaults(path, defaults);
  defaults.max_tokens = std::min(defaults.max_tokens, lm->info().context_length);
  return std::make_unique<DecoderEncoder>(std::move(lm), defaults);
}

}  // namespace af::models
