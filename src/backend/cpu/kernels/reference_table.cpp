// The scalar table: the reference kernels themselves, so "scalar" is the oracle.
#include "backend/cpu/kernels/kernel_table.hpp"
#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu {

const KernelTable& scalar_kernel_table() {
  static constexpr KernelTable kTable = {
      "scalar",
      {ref::matmul_f32, ref::matmul_f16, ref::matmul_bf16},
      ref::rms_norm,
      ref::layer_norm,
      ref::rope,
      ref::softmax,
      ref::silu,
      ref::silu_mul,
      ref::gelu_erf,
      ref::gelu_tanh,
      ref::gelu_quick,
      ref::add_scaled,
      ref::scale,
      ref::attention,
      ref::attention_f16,
      {{ref::attention_kv<DType::F32, DType::F32>, ref::attention_kv<DType::F32, DType::F16>,
        ref::attention_kv<DType::F32, DType::Q8_0>},
       {ref::attention_kv<DType::F16, DType::F32>, ref::attention_kv<DType::F16, DType::F16>,
        ref::attention_kv<DType::F16, DType::Q8_0>},
       {ref::attention_kv<DType::Q8_0, DType::F32>, ref::attention_kv<DType::Q8_0, DType::F16>,
        ref::attention_kv<DType::Q8_0, DType::Q8_0>}},
      {ref::f32_to_f32, ref::f16_to_f32, ref::bf16_to_f32},
  };
  return kTable;
}

}  // namespace af::cpu
