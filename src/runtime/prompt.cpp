#include "af/runtime/prompt.hpp"

#include <algorithm>
#include <numeric>

#include "af/core/error.hpp"

namespace af::runtime {
namespace {

constexpr char kComponent[] = "prompt";
constexpr uint64_t kImageBit = 1ull << 63;  // token keys are ids below 2^31

uint64_t hash64(const std::string& hex) {
  // The first 16 hex digits of the SHA-256 (any 64 bits of it are as good as any other).
  uint64_t h = 0;
  for (size_t i = 0; i < std::min<size_t>(16, hex.size()); ++i) {
    const char c = hex[i];
    h = h << 4 | static_cast<uint64_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return h;
}

uint64_t features_bytes(const models::ImageFeatures& f) { return f.rows.size() * sizeof(float); }

}  // namespace

ImagePrompt expand_image_tokens(std::span<const int32_t> ids, int32_t image_token,
                                std::span<const int64_t> counts) {
  const auto n_images = static_cast<int64_t>(counts.size());
  const auto placeholders = static_cast<int64_t>(std::count(ids.begin(), ids.end(), image_token));
  const int64_t expanded = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  AF_CHECK(placeholders == n_images || placeholders == expanded, ErrorCode::kInvalidArgument,
           kComponent, "the prompt has ", placeholders, " image placeholder tokens (id ",
           image_token, ") for ", n_images, " image(s), which need ", n_images,
           " placeholder(s) or ", expanded, " already expanded ones",
           placeholders < n_images ? ": more images than placeholders"
                                   : ": more placeholders than images");
  const bool expand = placeholders == n_images;
  ImagePrompt out;
  out.ids.reserve(ids.size() + static_cast<size_t>(expand ? expanded : 0));
  int64_t image = 0, row = 0;
  const auto push_row = [&] {
    out.ids.push_back(image_token);
    out.mask.push_back(1);
    out.image_of.push_back(image);
    out.row_of.push_back(row);
    if (++row == counts[static_cast<size_t>(image)]) row = 0, ++image;
  };
  for (int32_t id : ids) {
    if (id != image_token) {
      out.ids.push_back(id);
      out.mask.push_back(0);
    } else if (expand) {
      const int64_t current = image;
      while (image == current) push_row();
    } else {
      push_row();
    }
  }
  return out;
}

uint64_t token_key(int32_t id) { return static_cast<uint32_t>(id); }

std::vector<uint64_t> position_keys(const ImagePrompt& prompt,
                                    std::span<const std::string> image_hashes) {
  std::vector<uint64_t> keys(prompt.ids.size());
  size_t k = 0;
  for (size_t t = 0; t < keys.size(); ++t) {
    if (!prompt.mask[t]) {
      keys[t] = token_key(prompt.ids[t]);
      continue;
    }
    const auto image = static_cast<size_t>(prompt.image_of[k]);
    AF_CHECK(image < image_hashes.size(), ErrorCode::kInternal, kComponent,
             "image row without a hash");
    // Golden-ratio stride: rows of one image and of different images spread over the space.
    const uint64_t mixed = hash64(image_hashes[image]) +
                           static_cast<uint64_t>(prompt.row_of[k]) * 0x9E3779B97F4A7C15ull;
    keys[t] = kImageBit | (mixed & ~kImageBit);
    ++k;
  }
  return keys;
}

std::shared_ptr<const models::ImageFeatures> EncoderCache::find(const std::string& hash) {
  std::lock_guard lock(mu_);
  const auto it = index_.find(hash);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void EncoderCache::insert(const std::string& hash,
                          std::shared_ptr<const models::ImageFeatures> features) {
  std::lock_guard lock(mu_);
  if (const auto it = index_.find(hash); it != index_.end()) {
    bytes_ -= features_bytes(*it->second->second);
    lru_.erase(it->second);
    index_.erase(it);
  }
  bytes_ += features_bytes(*features);
  lru_.emplace_front(hash, std::move(features));
  index_[hash] = lru_.begin();
  evict_locked();
}

std::shared_ptr<const models::ImageFeatures> EncoderCache::get(models::ImageEncoder& encoder,
                                                               const modalities::Image& image) {
  if (auto hit = find(image.hash())) return hit;
  auto features = std::make_shared<const models::ImageFeatures>(encoder.encode(image));
  {
    std::lock_guard lock(mu_);
    ++encoder_calls_;
  }
  insert(image.hash(), features);
  return features;
}

std::shared_ptr<const models::AudioFeatures> EncoderCache::get(models::AudioEncoder& encoder,
                                                               const modalities::Audio& audio) {
  const std::string key = "audio:" + audio.hash();  // never an image's hash
  if (auto hit = find(key)) return hit;
  auto features = std::make_shared<const models::AudioFeatures>(encoder.encode(audio));
  {
    std::lock_guard lock(mu_);
    ++encoder_calls_;
  }
  insert(key, features);
  return features;
}

void EncoderCache::evict_locked() {
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    bytes_ -= features_bytes(*lru_.back().second);
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

uint64_t EncoderCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

uint64_t EncoderCache::encoder_calls() const {
  std::lock_guard lock(mu_);
  return encoder_calls_;
}

void EncoderCache::set_max_bytes(uint64_t max_bytes) {
  std::lock_guard lock(mu_);
  max_bytes_ = max_bytes;
  evict_locked();
}

}  // namespace af::runtime
