#pragma once
// SHA-256 (FIPS 180-4), self-contained so that the library needs no OpenSSL: the image content
// hash is its only use, and an embedder adding AlloyForge with add_subdirectory should not
// have to find a crypto library for it.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace af::modalities::detail {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  // The digest of everything updated so far; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> block_{};
  size_t block_used_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lower-case hex of the digest of `bytes`.
std::string sha256_hex(std::span<const uint8_t> bytes);
std::string to_hex(std::span<const uint8_t> digest);

}  // namespace af::modalities::detail
