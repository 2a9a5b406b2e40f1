#pragma once
// K-quant weights (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) repacked at load for AVX-512 VNNI, AVX-VNNI and
// AVX2 matmuls, so that a decode streams each weight byte once into vpdpbusd (vpmaddubsw) with no
// per-block shuffle or horizontal sum. The 256-bit kernels take a 64-byte chunk as two halves
// of 8 rows (kpacked_simd256.hpp).
//
// Rows go in groups of 16 (the last group padded with zero rows), a group's super-blocks
// contiguous along k. One packed super-block holds the 16 rows' 256 elements, every field laid
// out "row r in 32-bit lane r", so one 64-byte load feeds 16 rows:
//   Q4_K / Q5_K (16 x 144 / 16 x 176 bytes, the GGUF size):
//     [0, 64)     d[16], dmin[16] (fp16)
//     [64, 256)   the 12 scale bytes: word w of row r at 64 + 64 w + 4 r
//     [256, 2304) 32 quant chunks, chunk 8 t + c = qs bytes 32 t + 4 c .. + 3 of each row: low
//                 nibbles elements 64 t + 4 c + i (sub-block 2 t), high nibbles 64 t + 32 + 4 c + i
//     Q5_K: [2304, 2816) 8 qh chunks, chunk c = qh bytes 4 c .. + 3 of each row: element
//                 64 t + 32 h + 4 c + i has its fifth bit in bit 2 t + h of byte i (one shift
//                 and one and put it at 0x10 beside the low nibble, for every row at once)
//   Q6_K (16 x 210 bytes):
//     [0, 32)       d[16] (fp16)
//     [32, 288)     scales: byte 32 + 16 j + r = scale j (int8) of row r
//     [288, 2336)   32 chunks, chunk 16 n + 8 h + c = ql bytes 64 n + 32 h + 4 c .. + 3
//     [2336, 3360)  16 chunks, chunk 8 n + c = qh bytes 32 n + 4 c .. + 3
//   Q2_K (16 x 84 bytes):
//     [0, 64)       d[16], dmin[16] (fp16)
//     [64, 320)     the 16 scale bytes: word w of row r at 64 + 64 w + 4 r
//     [320, 1344)   16 chunks, chunk 8 n + c = qs bytes 32 n + 4 c .. + 3: bits 2 s of byte i
//                   are element 128 n + 32 s + 4 c + i (sub-block 8 n + 2 s + c / 4)
//   Q3_K (16 x 110 bytes):
//     [0, 32)       d[16] (fp16)
//     [32, 224)     the 12 scale bytes: word w of row r at 32 + 64 w + 4 r
//     [224, 1248)   16 qs chunks as Q2_K's
//     [1248, 1760)  8 hmask chunks, chunk c = hmask bytes 4 c .. + 3: bit 4 n + s of byte i is
//                   the third bit of element 128 n + 32 s + 4 c + i
// Each dot product follows the defined K-quant order of quant_kernels.hpp (the oracle is
// quant::ref::dot): the exact integer sums of a super-block, then acc = fma(d * da, sumi, acc)
// (and acc = fma(-(dmin * da), summ, acc)), super-blocks in order. Lane r of a vector holds row
// r's sums, so one vector fma serves 16 outputs with the bits of the scalar loop.
#include <cstdint>

#include "af/core/dtype.hpp"

namespace af::cpu::quant::kpacked {

inline constexpr int kGroupRows = 16;

// True for the types with this layout (Q2_K .. Q6_K).
bool is_packable(DType type);
// Bytes of one packed super-block of one group (16 GGUF super-blocks).
int64_t group_block_bytes(DType type);
inline int64_t group_count(int64_t n) { return (n + kGroupRows - 1) / kGroupRows; }

// Packs groups [g0, g1) of the n x k weight `w` (GGUF rows of row_bytes(type, k)) into `dst`,
// where group g0 starts. Rows at or past n are packed as zeros. Plain C++ (any CPU).
void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst);

// The inverse: GGUF rows of groups [g0, g1) (only rows below n) from packed group g0 at
// `packed`, written from dst on (row (g - g0) * 16 + r of dst is row g * 16 + r). Prefill runs
// the GGUF-layout tile kernels on such tiles: they reuse each decoded block over many rows.
void unpack_groups(DType type, const uint8_t* packed, int64_t n, int64_t k, int64_t g0, int64_t g1,
                   uint8_t* dst);

// y[i * ldy + j] = dot(weight row j, activation row i) (+ bias[j] when bias is set) for
// i in [i0, i1) and the rows j < n of groups [g0, g1); `w` points at packed group g0 and
// activation row i is the Q8_K row a + i * a_stride.
using GemmFn = void (*)(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k,
                        const uint8_t* a, int64_t a_stride, int64_t i0, int64_t i1,
                        const float* bias, float* y, int64_t ldy);

// The AVX-512 VNNI kernel of a packable type (needs AVX512_VNNI, CPUID-checked by the caller).
GemmFn avx512vnni_gemm(DType type);
// Its Q2_K / Q3_K kernels (kpacked_q23_avx512vnni.cpp), which avx512vnni_gemm returns.
GemmFn avx512vnni_gemm_q23(DType type);
// The AVX-512 VNNI prefill kernel (many activation rows; kpacked_prefill_avx512vnni.cpp): panels
// of two groups unpacked once per super-block for all rows i0 .. i1. Same contract as GemmFn.
// Null for a type without one.
GemmFn avx512vnni_prefill_gemm(DType type);
// Its Q2_K / Q3_K kernels (kpacked_q23_prefill_avx512vnni.cpp), which avx512vnni_prefill_gemm
// returns.
GemmFn avx512vnni_prefill_gemm_q23(DType type);
// The 256-bit kernels (kpacked_simd256.hpp): AVX2 + FMA + F16C, and the same with AVX-VNNI.
GemmFn avx2_gemm(DType type);
GemmFn avxvnni_gemm(DType type);
// Their prefill kernels (kpacked_q23_prefill_simd256.hpp; same contract as GemmFn): Q2_K and
// Q3_K only, null for the other types.
GemmFn avx2_prefill_gemm(DType type);
GemmFn avxvnni_prefill_gemm(DType type);

}  // namespace af::cpu::quant::kpacked
