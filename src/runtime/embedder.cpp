#include "af/runtime/embedder.hpp"

#include <algorithm>
#include <cmath>

#include "af/core/error.hpp"

namespace af {

std::unique_ptr<Embedder> Embedder::load(const std::string& path,
                                         const models::LoadOptions& load_options,
                                         const EmbedOptions& options) {
  std::shared_ptr<const tok::Tokenizer> tokenizer = tok::Tokenizer::load(path);
  return std::make_unique<Embedder>(models::load_encoder(path, load_options), std::move(tokenizer),
                                    options);
}

Embedder::Embedder(std::unique_ptr<models::EncoderModel> model,
                   std::shared_ptr<const tok::Tokenizer> tokenizer, const EmbedOptions& options)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      pooling_(options.pooling.value_or(model_->defaults().pooling)),
      normalize_(options.normalize.value_or(model_->defaults().normalize)),
      max_batch_tokens_(options.max_batch_tokens),
      max_batch_inputs_(options.max_batch_inputs) {
  AF_CHECK(max_batch_tokens_ > 0 && max_batch_inputs_ > 0, ErrorCode::kInvalidArgument, "embedding",
           "max_batch_tokens and max_batch_inputs must be positive, got ", max_batch_tokens_,
           " and ", max_batch_inputs_);
}

std::vector<int32_t> Embedder::tokenize(std::string_view text) const {
  return tokenizer_->encode(text, /*add_special=*/true);
}

std::vector<std::vector<float>> Embedder::embed(std::span<const std::string> texts) {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(texts.size());
  for (const std::string& text : texts) ids.push_back(tokenize(text));
  return embed_ids(ids);
}

std::vector<std::vector<float>> Embedder::embed_ids(std::span<const std::vector<int32_t>> inputs) {
  std::vector<std::span<const int32_t>> seqs(inputs.begin(), inputs.end());
  // Validate every input before running any pass (the model checks its own batch too).
  for (size_t i = 0; i < seqs.size(); ++i) {
    AF_CHECK(!seqs[i].empty(), ErrorCode::kInvalidArgument, "embedding", "input ", i,
             " has no tokens");
    AF_CHECK(std::ssize(seqs[i]) <= max_tokens(), ErrorCode::kOutOfRange, "embedding", "input ", i,
             " has ", seqs[i].size(), " tokens, more than the model's maximum of ", max_tokens());
  }
  std::vector<std::vector<float>> out;
  out.reserve(seqs.size());
  size_t first = 0;
  while (first < seqs.size()) {
    size_t last = first;
    int64_t tokens = 0;
    while (last < seqs.size() &&
           (last == first || (tokens + std::ssize(seqs[last]) <= max_batch_tokens_ &&
                              static_cast<int64_t>(last - first) < max_batch_inputs_))) {
      tokens += std::ssize(seqs[last++]);
    }
    const std::vector<float> rows =
        model_->hidden_states(std::span(seqs).subspan(first, last - first));
    const float* r = rows.data();
    for (size_t i = first; i < last; ++i) {
      out.push_back(pool(r, std::ssize(seqs[i])));
      r += std::ssize(seqs[i]) * dim();
    }
    first = last;
  }
  return out;
}

std::vector<float> Embedder::pool(const float* rows, int64_t n) const {
  const int64_t d = dim();
  std::vector<float> v(static_cast<size_t>(d), 0.0f);
  switch (pooling_) {
    case models::Pooling::kCls:
      std::copy_n(rows, d, v.begin());
      break;
    case models::Pooling::kLast:
      std::copy_n(rows + (n - 1) * d, d, v.begin());
      break;
    case models::Pooling::kMean:
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t j = 0; j < d; ++j) v[static_cast<size_t>(j)] += rows[t * d + j];
      }
      for (float& x : v) x /= static_cast<float>(n);
      break;
  }
  if (normalize_) l2_normalize(v);
  return v;
}

void l2_normalize(std::span<float> v) {
  double sum = 0.0;
  for (const float x : v) sum += static_cast<double>(x) * x;
  const float norm = std::max(static_cast<float>(std::sqrt(sum)), 1e-12f);
  for (float& x : v) x /= norm;
}

void truncate_embedding(std::vector<float>& v, int64_t dims) {
  AF_CHECK(dims >= 1 && dims <= std::ssize(v), ErrorCode::kInvalidArgument, "embedding",
           "dimensions must be between 1 and ", v.size(), ", got ", dims);
  v.resize(static_cast<size_t>(dims));
  l2_normalize(v);
}

}  // namespace af
