#pragma once
// POST /v1/embeddings as OpenAI defines it: the request parsed and validated (no model here, so
// it is unit-tested and fuzzed on its own), and the response body built from the vectors.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api.hpp"

namespace af::server {

struct EmbeddingLimits {
  size_t max_inputs = 2048;  // inputs in one request (OpenAI's limit)
  int max_json_depth = 16;
  size_t max_json_elements = size_t{1} << 20;
};

struct EmbeddingRequest {
  std::string model;
  // "input": a string or a list of strings (texts), or a list of token ids or a list of such
  // lists (ids): exactly one of the two is filled, one entry per input.
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
  bool base64 = false;                // encoding_format "base64" (little-endian float32 bytes)
  std::optional<int64_t> dimensions;  // Matryoshka truncation + renormalisation
  size_t size() const { return texts.empty() ? ids.size() : texts.size(); }
};

// Throws ApiError (400) naming the field at fault ("input[3]", "encoding_format", ...).
EmbeddingRequest parse_embedding_request(std::string_view body, const EmbeddingLimits& limits = {});

// {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...] or
// "base64"}], "model": ..., "usage": {"prompt_tokens", "total_tokens"}}.
nlohmann::json embedding_response(const std::vector<std::vector<float>>& vectors, bool base64,
                                  const std::string& model, int64_t prompt_tokens);

// RFC 4648 base64 of the vector's float32 values in little-endian byte order (what the openai
// client decodes with numpy.frombuffer(..., dtype="float32")).
std::string base64_floats(const std::vector<float>& v);

}  // namespace af::server
