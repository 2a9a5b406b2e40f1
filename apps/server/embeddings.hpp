#pragma once
// /v1/embeddings over an af::Embedder: inputs tokenized and checked against the model (too long:
// 400 naming the input's index), embedded in one packed batch, `dimensions` applied.
// Requests run one at a time on the embedder (its scratch is not shared between threads).
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "af/runtime/embedder.hpp"
#include "embeddings_api.hpp"

namespace af::server {

class EmbeddingService {
 public:
  explicit EmbeddingService(std::unique_ptr<Embedder> embedder) : embedder_(std::move(embedder)) {}

  // The response body for a request body; throws ApiError (400 for bad input).
  nlohmann::json respond(std::string_view body, const std::string& model_id);
  const Embedder& embedder() const { return *embedder_; }

 private:
  std::vector<std::vector<int32_t>> token_ids(const EmbeddingRequest& r) const;

  std::unique_ptr<Embedder> embedder_;
  std::mutex mutex_;  // one request on the embedder at a time
};

// The service for the model at `path` on `threads` threads (0: all); pooling "" (the folder's
// configuration), "mean", "cls" or "last". Throws af::Error when the model cannot be loaded.
std::unique_ptr<EmbeddingService> make_embedding_service(const std::string& path, int threads,
                                                         const std::string& pooling);

}  // namespace af::server
