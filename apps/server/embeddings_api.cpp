#include "embeddings_api.hpp"

#include <bit>
#include <cstring>
#include <limits>

#include "af/core/error.hpp"

namespace af::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message,
                      const std::string& code = "invalid_value") {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

int32_t token_id(const json& v, const std::string& param) {
  if (!v.is_number_integer()) bad(param, "'" + param + "' must be an integer token id.");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{INT32_MAX}
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)) {
    bad(param, "'" + param + "' is not a token id (" + v.dump() + ").");
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

std::vector<int32_t> id_list(const json& list, const std::string& param) {
  if (list.empty()) bad(param, "'" + param + "' must not be empty.");
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    ids.push_back(token_id(list[i], param + "[" + std::to_string(i) + "]"));
  }
  return ids;
}

void parse_input(const json& input, EmbeddingRequest& r, const EmbeddingLimits& limits) {
  if (input.is_string()) {
    if (input.get_ref<const std::string&>().empty()) bad("input", "'input' must not be empty.");
    r.texts.push_back(input.get<std::string>());
    return;
  }
  if (!input.is_array()) {
    bad("input",
        "'input' must be a string, an array of strings, an array of token ids or an "
        "array of arrays of token ids.",
        "invalid_type");
  }
  if (input.empty()) bad("input", "'input' must not be empty.");
  if (input[0].is_number()) {  // one list of token ids
    r.ids.push_back(id_list(input, "input"));
    return;
  }
  if (input.size() > limits.max_inputs) {
    bad("input", "'input' holds " + std::to_string(input.size()) + " inputs; at most " +
                     std::to_string(limits.max_inputs) + " are allowed.");
  }
  const bool texts = input[0].is_string();
  for (size_t i = 0; i < input.size(); ++i) {
    const std::string p = "input[" + std::to_string(i) + "]";
    const json& item = input[i];
    if (texts) {
      if (!item.is_string())
        bad(p, "'" + p + "' must be a string like the inputs before it.", "invalid_type");
      if (item.get_ref<const std::string&>().empty()) bad(p, "'" + p + "' must not be empty.");
      r.texts.push_back(item.get<std::string>());
    } else {
      if (!item.is_array()) bad(p, "'" + p + "' must be an array of token ids.", "invalid_type");
      r.ids.push_back(id_list(item, p));
    }
  }
}

}  // namespace

EmbeddingRequest parse_embedding_request(std::string_view body_text,
                                         const EmbeddingLimits& limits) {
  const json body = parse_json_body(body_text, limits.max_json_depth, limits.max_json_elements);
  EmbeddingRequest r;
  if (auto m = body.find("model"); m != body.end() && !m->is_null()) {
    if (!m->is_string()) bad("model", "'model' must be a string.", "invalid_type");
    r.model = m->get<std::string>();
  }
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) {
    throw ApiError(400, "Missing required parameter: 'input'.", "invalid_request_error", "input",
                   "missing_required_parameter");
  }
  parse_input(*input, r, limits);
  if (auto f = body.find("encoding_format"); f != body.end() && !f->is_null()) {
    if (!f->is_string() || (*f != "float" && *f != "base64")) {
      bad("encoding_format", "'encoding_format' must be \"float\" or \"base64\".");
    }
    r.base64 = *f == "base64";
  }
  if (auto d = body.find("dimensions"); d != body.end() && !d->is_null()) {
    if (!d->is_number_integer() || d->get<int64_t>() < 1 ||
        (d->is_number_unsigned() && d->get<uint64_t>() > uint64_t{INT32_MAX})) {
      bad("dimensions", "'dimensions' must be a positive integer.");
    }
    r.dimensions = d->get<int64_t>();
  }
  return r;
}

std::string base64_floats(const std::vector<float>& v) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * sizeof(float), '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u = std::bit_cast<uint32_t>(v[i]);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xff);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

json embedding_response(const std::vector<std::vector<float>>& vectors, bool base64,
                        const std::string& model, int64_t prompt_tokens) {
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    json e = {{"object", "embedding"}, {"index", i}};
    if (base64) {
      e["embedding"] = base64_floats(vectors[i]);
    } else {
      e["embedding"] = vectors[i];
    }
    data.push_back(std::move(e));
  }
  return json{{"object", "list"},
              {"data", std::move(data)},
              {"model", model},
              {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

}  // namespace af::server
