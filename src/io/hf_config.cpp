#include "af/io/hf_config.hpp"

#include <cmath>

#include "af/core/error.hpp"

namespace af::io {

HfConfig::HfConfig(nlohmann::json json, std::string origin)
    : json_(std::move(json)), origin_(std::move(origin)) {
  AF_CHECK(json_.is_object(), ErrorCode::kFormat, "config", origin_, ": not a JSON object");
}

bool HfConfig::has(const std::string& key) const {
  auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

const nlohmann::json& HfConfig::at(const std::string& key) const {
  auto it = json_.find(key);
  AF_CHECK(it != json_.end() && !it->is_null(), ErrorCode::kFormat, "config", origin_,
           ": missing required field \"", key, "\"");
  return *it;
}

int64_t HfConfig::get_int(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
      return static_cast<int64_t>(d);
  }
  fail(ErrorCode::kFormat, "config", origin_, ": field \"", key, "\" must be an integer, got ",
       v.dump());
}

int64_t HfConfig::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double HfConfig::get_float(const std::string& key) const {
  const nlohmann::json& v = at(key);
  AF_CHECK(v.is_number(), ErrorCode::kFormat, "config", origin_, ": field \"", key,
           "\" must be a number, got ", v.dump());
  return v.get<double>();
}

double HfConfig::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool HfConfig::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = at(key);
  AF_CHECK(v.is_boolean(), ErrorCode::kFormat, "config", origin_, ": field \"", key,
           "\" must be true or false, got ", v.dump());
  return v.get<bool>();
}

std::string HfConfig::get_string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = at(key);
  AF_CHECK(v.is_string(), ErrorCode::kFormat, "config", origin_, ": field \"", key,
           "\" must be a string, got ", v.dump());
  return v.get<std::string>();
}

std::string HfConfig::architecture() const {
  if (!has("architectures")) return "";
  const nlohmann::json& v = at("architectures");
  AF_CHECK(v.is_array() && !v.empty() && v[0].is_string(), ErrorCode::kFormat, "config", origin_,
           ": field \"architectures\" must be a non-empty list of strings");
  return v[0].get<std::string>();
}

std::vector<int32_t> HfConfig::eos_token_ids() const {
  std::vector<int32_t> ids;
  if (!has("eos_token_id")) return ids;
  const nlohmann::json& v = at("eos_token_id");
  auto add = [&](const nlohmann::json& e) {
    AF_CHECK(e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() <= INT32_MAX,
             ErrorCode::kFormat, "config", origin_, ": bad eos_token_id entry ", e.dump());
    ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
  };
  if (v.is_array()) {
    for (const auto& e : v) add(e);
  } else {
    add(v);
  }
  return ids;
}

std::optional<HfConfig> HfConfig::object(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const nlohmann::json& v = at(key);
  AF_CHECK(v.is_object(), ErrorCode::kFormat, "config", origin_, ": field \"", key,
           "\" must be an object, got ", v.dump());
  return HfConfig(v, origin_ + " (" + key + ")");
}

}  // namespace af::io
