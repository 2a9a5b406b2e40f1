#include "runtime/end_tokens.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace af::runtime {
namespace {

// A missing or unreadable generation_config.json adds nothing: it is optional in HF folders.
std::vector<int32_t> generation_config_eos(const std::string& model_path) {
  std::filesystem::path dir = model_path;
  if (!std::filesystem::is_directory(dir)) dir = dir.parent_path();
  std::vector<int32_t> ids;
  std::ifstream in(dir / "generation_config.json");
  if (!in) return ids;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("eos_token_id")) return ids;
  const nlohmann::json& e = j["eos_token_id"];
  if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
  if (e.is_array()) {
    for (const auto& v : e)
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  }
  return ids;
}

}  // namespace

std::vector<int32_t> default_end_tokens(const models::CausalLM& model,
                                        const tok::Tokenizer* tokenizer) {
  std::vector<int32_t> ids = model.info().eos_token_ids;
  if (tokenizer && tokenizer->eos_id() >= 0) ids.push_back(tokenizer->eos_id());
  for (int32_t id : generation_config_eos(model.info().path)) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace af::runtime
