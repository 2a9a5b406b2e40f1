#pragma once
// Typed, checked access to an HF config.json. Every error names the field and the file.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace af::io {

class HfConfig {
 public:
  HfConfig(nlohmann::json json, std::string origin);

  bool has(const std::string& key) const;
  int64_t get_int(const std::string& key) const;  // required
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  // The first entry of "architectures" (or "" when absent).
  std::string architecture() const;
  // The end-of-sequence ids ("eos_token_id" may be an int or a list).
  std::vector<int32_t> eos_token_ids() const;
  // A nested object (e.g. "rope_scaling"); nullopt when absent or null.
  std::optional<HfConfig> object(const std::string& key) const;

  const nlohmann::json& json() const { return json_; }
  const std::string& origin() const { return origin_; }

 private:
  const nlohmann::json& at(const std::string& key) const;
  nlohmann::json json_;
  std::string origin_;
};

}  // namespace af::io
