// The K-quant packed layout of kpacked.hpp: packing GGUF rows into row groups.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "af/core/error.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/kpacked.hpp"

namespace af::cpu::quant::kpacked {
namespace {

using af::quant::BlockQ2_K;
using af::quant::BlockQ3_K;
using af::quant::BlockQ4_K;
using af::quant::BlockQ5_K;
using af::quant::BlockQ6_K;
using af::quant::kQKK;

// Scatters 4 bytes of each of the 16 rows into a 64-byte chunk, row r at bytes 4r..4r+3.
void put_chunk(const uint8_t* const* rows, int offset, uint8_t* chunk) {
  for (int r = 0; r < kGroupRows; ++r) std::memcpy(chunk + 4 * r, rows[r] + offset, 4);
}

template <class Block>
void pack_k4_block(const Block* const* src, uint8_t* out) {
  const uint8_t* qs[kGroupRows];
  const uint8_t* sc[kGroupRows];
  for (int r = 0; r < kGroupRows; ++r) {
    std::memcpy(out + 2 * r, &src[r]->d, 2);
    std::memcpy(out + 32 + 2 * r, &src[r]->dmin, 2);
    qs[r] = src[r]->qs;
    sc[r] = src[r]->scales;
  }
  for (int w = 0; w < 3; ++w) put_chunk(sc, 4 * w, out + 64 + 64 * w);
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 8; ++c) put_chunk(qs, 32 * t + 4 * c, out + 256 + 64 * (8 * t + c));
  }
  if constexpr (std::is_same_v<Block, BlockQ5_K>) {
    const uint8_t* qh[kGroupRows];
    for (int r = 0; r < kGroupRows; ++r) qh[r] = src[r]->qh;
    for (int c = 0; c < 8; ++c) put_chunk(qh, 4 * c, out + 2304 + 64 * c);
  }
}

void pack_q6_k_block(const BlockQ6_K* const* src, uint8_t* out) {
  const uint8_t* ql[kGroupRows];
  const uint8_t* qh[kGroupRows];
  for (int r = 0; r < kGroupRows; ++r) {
    std::memcpy(out + 2 * r, &src[r]->d, 2);
    for (int j = 0; j < 16; ++j) std::memcpy(out + 32 + 16 * j + r, &src[r]->scales[j], 1);
    ql[r] = src[r]->ql;
    qh[r] = src[r]->qh;
  }
  for (int c = 0; c < 32; ++c) put_chunk(ql, 4 * c, out + 288 + 64 * c);
  for (int c = 0; c < 16; ++c) put_chunk(qh, 4 * c, out + 2336 + 64 * c);
}

// Q2_K: d, dmin, 4 scale words, 16 qs chunks (kpacked.hpp).
void pack_q2_k_block(const BlockQ2_K* const* src, uint8_t* out) {
  const uint8_t* qs[kGroupRows];
  const uint8_t* sc[kGroupRows];
  for (int r = 0; r < kGroupRows; ++r) {
    std::memcpy(out + 2 * r, &src[r]->d, 2);
    std::memcpy(out + 32 + 2 * r, &src[r]->dmin, 2);
    qs[r] = src[r]->qs;
    sc[r] = src[r]->scales;
  }
  for (int w = 0; w < 4; ++w) put_chunk(sc, 4 * w, out + 64 + 64 * w);
  for (int c = 0; c < 16; ++c) put_chunk(qs, 4 * c, out + 320 + 64 * c);
}

// Q3_K: d, 3 scale words, 16 qs chunks, 8 hmask chunks (kpacked.hpp).
void pack_q3_k_block(const BlockQ3_K* const* src, uint8_t* out) {
  const uint8_t* qs[kGroupRows];
  const uint8_t* sc[kGroupRows];
  const uint8_t* hm[kGroupRows];
  for (int r = 0; r < kGroupRows; ++r) {
    std::memcpy(out + 2 * r, &src[r]->d, 2);
    qs[r] = src[r]->qs;
    sc[r] = src[r]->scales;
    hm[r] = src[r]->hmask;
  }
  for (int w = 0; w < 3; ++w) put_chunk(sc, 4 * w, out + 32 + 64 * w);
  for (int c = 0; c < 16; ++c) put_chunk(qs, 4 * c, out + 224 + 64 * c);
  for (int c = 0; c < 8; ++c) put_chunk(hm, 4 * c, out + 1248 + 64 * c);
}

// The inverse of put_chunk.
void get_chunk(const uint8_t* chunk, int offset, uint8_t* const* rows, int n_rows) {
  for (int r = 0; r < n_rows; ++r) std::memcpy(rows[r] + offset, chunk + 4 * r, 4);
}

template <class Block>
void unpack_k4_block(const uint8_t* in, Block* const* dst, int n_rows) {
  uint8_t* qs[kGroupRows];
  uint8_t* sc[kGroupRows];
  for (int r = 0; r < n_rows; ++r) {
    std::memcpy(&dst[r]->d, in + 2 * r, 2);
    std::memcpy(&dst[r]->dmin, in + 32 + 2 * r, 2);
    qs[r] = dst[r]->qs;
    sc[r] = dst[r]->scales;
  }
  for (int w = 0; w < 3; ++w) get_chunk(in + 64 + 64 * w, 4 * w, sc, n_rows);
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 8; ++c) get_chunk(in + 256 + 64 * (8 * t + c), 32 * t + 4 * c, qs, n_rows);
  }
  if constexpr (std::is_same_v<Block, BlockQ5_K>) {
    uint8_t* qh[kGroupRows];
    for (int r = 0; r < n_rows; ++r) qh[r] = dst[r]->qh;
    for (int c = 0; c < 8; ++c) get_chunk(in + 2304 + 64 * c, 4 * c, qh, n_rows);
  }
}

void unpack_q6_k_block(const uint8_t* in, BlockQ6_K* const* dst, int n_rows) {
  uint8_t* ql[kGroupRows];
  uint8_t* qh[kGroupRows];
  for (int r = 0; r < n_rows; ++r) {
    std::memcpy(&dst[r]->d, in + 2 * r, 2);
    for (int j = 0; j < 16; ++j) std::memcpy(&dst[r]->scales[j], in + 32 + 16 * j + r, 1);
    ql[r] = dst[r]->ql;
    qh[r] = dst[r]->qh;
  }
  for (int c = 0; c < 32; ++c) get_chunk(in + 288 + 64 * c, 4 * c, ql, n_rows);
  for (int c = 0; c < 16; ++c) get_chunk(in + 2336 + 64 * c, 4 * c, qh, n_rows);
}

void unpack_q2_k_block(const uint8_t* in, BlockQ2_K* const* dst, int n_rows) {
  uint8_t* qs[kGroupRows];
  uint8_t* sc[kGroupRows];
  for (int r = 0; r < n_rows; ++r) {
    std::memcpy(&dst[r]->d, in + 2 * r, 2);
    std::memcpy(&dst[r]->dmin, in + 32 + 2 * r, 2);
    qs[r] = dst[r]->qs;
    sc[r] = dst[r]->scales;
  }
  for (int w = 0; w < 4; ++w) get_chunk(in + 64 + 64 * w, 4 * w, sc, n_rows);
  for (int c = 0; c < 16; ++c) get_chunk(in + 320 + 64 * c, 4 * c, qs, n_rows);
}

void unpack_q3_k_block(const uint8_t* in, BlockQ3_K* const* dst, int n_rows) {
  uint8_t* qs[kGroupRows];
  uint8_t* sc[kGroupRows];
  uint8_t* hm[kGroupRows];
  for (int r = 0; r < n_rows; ++r) {
    std::memcpy(&dst[r]->d, in + 2 * r, 2);
    qs[r] = dst[r]->qs;
    sc[r] = dst[r]->scales;
    hm[r] = dst[r]->hmask;
  }
  for (int w = 0; w < 3; ++w) get_chunk(in + 32 + 64 * w, 4 * w, sc, n_rows);
  for (int c = 0; c < 16; ++c) get_chunk(in + 224 + 64 * c, 4 * c, qs, n_rows);
  for (int c = 0; c < 8; ++c) get_chunk(in + 1248 + 64 * c, 4 * c, hm, n_rows);
}

// One packed super-block of each type, both ways.
void pack_block(const BlockQ2_K* const* src, uint8_t* out) { pack_q2_k_block(src, out); }
void pack_block(const BlockQ3_K* const* src, uint8_t* out) { pack_q3_k_block(src, out); }
void pack_block(const BlockQ4_K* const* src, uint8_t* out) { pack_k4_block(src, out); }
void pack_block(const BlockQ5_K* const* src, uint8_t* out) { pack_k4_block(src, out); }
void pack_block(const BlockQ6_K* const* src, uint8_t* out) { pack_q6_k_block(src, out); }
void unpack_block(const uint8_t* in, BlockQ2_K* const* dst, int n) {
  unpack_q2_k_block(in, dst, n);
}
void unpack_block(const uint8_t* in, BlockQ3_K* const* dst, int n) {
  unpack_q3_k_block(in, dst, n);
}
void unpack_block(const uint8_t* in, BlockQ4_K* const* dst, int n) { unpack_k4_block(in, dst, n); }
void unpack_block(const uint8_t* in, BlockQ5_K* const* dst, int n) { unpack_k4_block(in, dst, n); }
void unpack_block(const uint8_t* in, BlockQ6_K* const* dst, int n) {
  unpack_q6_k_block(in, dst, n);
}

template <class Block>
void unpack_type(const uint8_t* packed, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst) {
  const int64_t nb = k / kQKK;
  const int64_t row = nb * static_cast<int64_t>(sizeof(Block));
  const int64_t block_bytes = kGroupRows * static_cast<int64_t>(sizeof(Block));
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* in = packed + (g - g0) * nb * block_bytes;
    const int n_rows = static_cast<int>(std::min<int64_t>(kGroupRows, n - g * kGroupRows));
    for (int64_t b = 0; b < nb; ++b) {
      Block* out[kGroupRows];
      for (int r = 0; r < n_rows; ++r) {
        out[r] = reinterpret_cast<Block*>(dst + ((g - g0) * kGroupRows + r) * row) + b;
      }
      unpack_block(in + b * block_bytes, out, n_rows);
    }
  }
}

template <class Block>
void pack_type(const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, uint8_t* dst) {
  const int64_t nb = k / kQKK;
  const int64_t row = nb * static_cast<int64_t>(sizeof(Block));
  const int64_t block_bytes = kGroupRows * static_cast<int64_t>(sizeof(Block));
  const Block zero{};  // the padding rows: all-zero blocks give zero sums
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = dst + (g - g0) * nb * block_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const Block* src[kGroupRows];
      for (int r = 0; r < kGroupRows; ++r) {
        const int64_t j = g * kGroupRows + r;
        src[r] = j < n ? reinterpret_cast<const Block*>(w + j * row) + b : &zero;
      }
      pack_block(src, out + b * block_bytes);
    }
  }
}

}  // namespace

bool is_packable(DType type) {
  return type == DType::Q2_K || type == DType::Q3_K || type == DType::Q4_K || type == DType::Q5_K ||
         type == DType::Q6_K;
}

int64_t group_block_bytes(DType type) {
  switch (type) {
    case DType::Q2_K:
      return kGroupRows * sizeof(BlockQ2_K);
    case DType::Q3_K:
      return kGroupRows * sizeof(BlockQ3_K);
    case DType::Q4_K:
      return kGroupRows * sizeof(BlockQ4_K);
    case DType::Q5_K:
      return kGroupRows * sizeof(BlockQ5_K);
    case DType::Q6_K:
      return kGroupRows * sizeof(BlockQ6_K);
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no packed layout");
  }
}

void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst) {
  switch (type) {
    case DType::Q2_K:
      return pack_type<BlockQ2_K>(w, n, k, g0, g1, dst);
    case DType::Q3_K:
      return pack_type<BlockQ3_K>(w, n, k, g0, g1, dst);
    case DType::Q4_K:
      return pack_type<BlockQ4_K>(w, n, k, g0, g1, dst);
    case DType::Q5_K:
      return pack_type<BlockQ5_K>(w, n, k, g0, g1, dst);
    case DType::Q6_K:
      return pack_type<BlockQ6_K>(w, n, k, g0, g1, dst);
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no packed layout");
  }
}

void unpack_groups(DType type, const uint8_t* packed, int64_t n, int64_t k, int64_t g0, int64_t g1,
                   uint8_t* dst) {
  switch (type) {
    case DType::Q2_K:
      return unpack_type<BlockQ2_K>(packed, n, k, g0, g1, dst);
    case DType::Q3_K:
      return unpack_type<BlockQ3_K>(packed, n, k, g0, g1, dst);
    case DType::Q4_K:
      return unpack_type<BlockQ4_K>(packed, n, k, g0, g1, dst);
    case DType::Q5_K:
      return unpack_type<BlockQ5_K>(packed, n, k, g0, g1, dst);
    case DType::Q6_K:
      return unpack_type<BlockQ6_K>(packed, n, k, g0, g1, dst);
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no packed layout");
  }
}

}  // namespace af::cpu::quant::kpacked
