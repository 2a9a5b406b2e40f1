#pragma once
// Prompts with images or audio: placeholder expansion as the HF processors do it, the cache key of
// every position (token id, or image content hash + row), and a bounded LRU cache of encoder
// outputs. Prefix caches compare keys, not ids, so two different images behind identical
// placeholder ids never share KV, while the same image asked about again reuses it.
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "af/modalities/image.hpp"
#include "af/models/audio_encoder.hpp"
#include "af/models/image_encoder.hpp"

namespace af::runtime {

// A token prompt with its images placed.
struct ImagePrompt {
  std::vector<int32_t> ids;       // expanded: num_image_tokens placeholders per image
  std::vector<uint8_t> mask;      // [ids.size()]: 1 at image rows
  std::vector<int64_t> image_of;  // [image rows]: which image each masked position shows
  std::vector<int64_t> row_of;    // [image rows]: which row of that image
  // M-RoPE models (Qwen2-VL): [3][ids.size()] rotary positions (MultimodalLM::mrope_positions);
  // empty for the others.
  std::vector<int32_t> positions;
};

// `ids` holds image_token either once per image (each expanded to counts[i] copies, as the HF
// processor expands "<image>") or already expanded (sum(counts) of them, used as is; images fill
// them in order, as transformers' masked_scatter does). Throws af::Error kInvalidArgument
// (component "prompt") when placeholders and images do not match up.
ImagePrompt expand_image_tokens(std::span<const int32_t> ids, int32_t image_token,
                                std::span<const int64_t> counts);

// The key of each position of `prompt`: a token id as is; an image row a value no token id has,
// made from the image's content hash and the row index.
std::vector<uint64_t> position_keys(const ImagePrompt& prompt,
                                    std::span<const std::string> image_hashes);
uint64_t token_key(int32_t id);

// Encoder outputs by image content hash, least recently used evicted first once their rows
// exceed max_bytes (0: nothing is kept). Thread-safe.
class EncoderCache {
 public:
  explicit EncoderCache(uint64_t max_bytes = 256ull << 20) : max_bytes_(max_bytes) {}
  std::shared_ptr<const models::ImageFeatures> find(const std::string& hash);
  void insert(const std::string& hash, std::shared_ptr<const models::ImageFeatures> features);
  // find(), else encoder.encode(image) inserted; counts the encoder calls it made.
  std::shared_ptr<const models::ImageFeatures> get(models::ImageEncoder& encoder,
                                                   const modalities::Image& image);
  // The same for audio (kept under "audio:" + its hash).
  std::shared_ptr<const models::AudioFeatures> get(models::AudioEncoder& encoder,
                                                   const modalities::Audio& audio);
  uint64_t bytes() const;
  uint64_t encoder_calls() const;
  void set_max_bytes(uint64_t max_bytes);

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const models::ImageFeatures>>;
  void evict_locked();
  mutable std::mutex mu_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  uint64_t encoder_calls_ = 0;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace af::runtime
