#pragma once
// Quantized matmul kernels: a weight row of a GGUF block type times an activation row quantized
// to the type's "vec-dot" type (Q8_0 for the 32-element types, Q8_K for the K-quants).
//
// Every ISA computes each dot product in the same defined order, so results are bit-identical
// across ISAs, tile shapes and thread counts:
//  * 32-element types: for block b, the exact integer sum P_b of q_e * a_e over its 32 elements
//    (q the signed weight value: nibble - 8 for Q4_0, 5-bit value - 16 for Q5_0, the int8 for
//    Q8_0, the unsigned value for Q4_1 / Q5_1) goes through acc = fma(dw_b * da_b, float(P_b),
//    acc), blocks in order. The types with a min (Q4_1, Q5_1) keep a second accumulator
//    acc_min = fma(m_b * da_b, float(S_b), acc_min) with S_b the exact sum of the block's
//    activations, and return acc + acc_min. dw_b * da_b and m_b * da_b are products of two
//    halves, so exact; |P_b| <= 32 * 128 * 127 < 2^24, so float(P_b) is exact too. One float
//    accumulator per output and one fma per block is what lets a tile reduce many outputs' integer
//    sums together and handle them with one vector convert and fma.
//  * K-quants: per super-block the exact integer sums (scaled quants · activations, and the mins
//    · activation sums) go through acc = fma(d * da, float(sumi), acc) and
//    acc = fma(-(dmin * da), float(summ), acc), super-blocks in order.
#include <cstdint>
#include <optional>

#include "af/core/dtype.hpp"

namespace af::cpu::quant {

// y[i * ldy + j] = dot(weight row j, activation row i) for i < na, j < nw. Weight rows are
// w_stride bytes apart, activation rows a_stride; k is a multiple of the block size.
using QuantDotFn = void (*)(int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw,
                            const uint8_t* a, int64_t a_stride, int64_t na, float* y, int64_t ldy);
// Quantizes a row of k floats to the vec-dot type.
using QuantizeActFn = void (*)(const float* x, void* y, int64_t k);

enum QuantSlot : int {
  kSlotQ4_0,
  kSlotQ4_1,
  kSlotQ5_0,
  kSlotQ5_1,
  kSlotQ8_0,
  kSlotQ2_K,
  kSlotQ3_K,
  kSlotQ4_K,
  kSlotQ5_K,
  kSlotQ6_K,
  kSlotQ8_K,
  kNumQuantSlots
};

// The table slot of a weight type with a quantized matmul, or nullopt.
std::optional<QuantSlot> quant_slot(DType type);
// Q8_0 or Q8_K.
DType vec_dot_type(DType weight_type);

struct QuantKernels {
  const char* isa;
  QuantDotFn dot[kNumQuantSlots];  // every slot set (a SIMD table reuses scalar ones it lacks)
  QuantizeActFn quantize_q8_0;
  QuantizeActFn quantize_q8_k;
};

const QuantKernels& scalar_quant_kernels();
const QuantKernels& avx2_quant_kernels();
const QuantKernels& avxvnni_quant_kernels();  // needs AVX-VNNI (CPUID-checked by caller)
const QuantKernels& avx512_quant_kernels();
const QuantKernels& avx512vnni_quant_kernels();  // needs AVX512_VNNI (CPUID-checked by caller)

namespace ref {
// One reference dot product per slot (the oracle for the SIMD kernels).
float dot(QuantSlot slot, int64_t k, const uint8_t* w, const uint8_t* a);
void dot_tile(QuantSlot slot, int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw,
              const uint8_t* a, int64_t a_stride, int64_t na, float* y, int64_t ldy);
}  // namespace ref

}  // namespace af::cpu::quant
