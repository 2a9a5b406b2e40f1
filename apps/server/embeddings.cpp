#include "embeddings.hpp"

#include "af/core/error.hpp"

namespace af::server {

using nlohmann::json;

std::vector<std::vector<int32_t>> EmbeddingService::token_ids(const EmbeddingRequest& r) const {
  std::vector<std::vector<int32_t>> ids = r.ids;
  for (const std::string& text : r.texts) {
    try {
      ids.push_back(embedder_->tokenize(text));
    } catch (const Error& e) {
      const std::string p = "input[" + std::to_string(ids.size()) + "]";
      throw ApiError(400, "'" + p + "' cannot be tokenized: " + e.what(), "invalid_request_error",
                     p, "invalid_value");
    }
  }
  const int64_t vocab = embedder_->model().vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string p = "input[" + std::to_string(i) + "]";
    if (std::ssize(ids[i]) > embedder_->max_tokens()) {
      throw ApiError(400,
                     "'" + p + "' has " + std::to_string(ids[i].size()) +
                         " tokens, more than the model's maximum input length of " +
                         std::to_string(embedder_->max_tokens()) + " tokens.",
                     "invalid_request_error", p, "context_length_exceeded");
    }
    for (int32_t id : ids[i]) {
      if (id >= vocab) {
        throw ApiError(400,
                       "'" + p + "' holds token id " + std::to_string(id) +
                           ", outside the vocabulary of " + std::to_string(vocab) + ".",
                       "invalid_request_error", p, "invalid_value");
      }
    }
  }
  return ids;
}

json EmbeddingService::respond(std::string_view body, const std::string& model_id) {
  const EmbeddingRequest r = parse_embedding_request(body);
  if (r.dimensions && *r.dimensions > embedder_->dim()) {
    throw ApiError(400,
                   "'dimensions' is " + std::to_string(*r.dimensions) +
                       "; this model's embeddings have " + std::to_string(embedder_->dim()) +
                       " (smaller values truncate and renormalise them).",
                   "invalid_request_error", "dimensions", "invalid_value");
  }
  const std::vector<std::vector<int32_t>> ids = token_ids(r);
  int64_t tokens = 0;
  for (const auto& seq : ids) tokens += std::ssize(seq);
  std::vector<std::vector<float>> vectors;
  {
    std::lock_guard lock(mutex_);
    vectors = embedder_->embed_ids(ids);
  }
  if (r.dimensions && *r.dimensions < embedder_->dim()) {
    for (auto& v : vectors) truncate_embedding(v, *r.dimensions);
  }
  return embedding_response(vectors, r.base64, r.model.empty() ? model_id : r.model, tokens);
}

std::unique_ptr<EmbeddingService> make_embedding_service(const std::string& path, int threads,
                                                         const std::string& pooling) {
  models::LoadOptions load;
  load.num_threads = threads;
  EmbedOptions options;
  if (!pooling.empty()) {
    options.pooling = models::pooling_from_name(pooling);
    AF_CHECK(options.pooling.has_value(), ErrorCode::kInvalidArgument, "server", "--pooling \"",
             pooling, "\" is not mean, cls or last");
  }
  return std::make_unique<EmbeddingService>(Embedder::load(path, load, options));
}

}  // namespace af::server
