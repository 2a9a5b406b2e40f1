#pragma once
// Run-time choice of the kernel table from what the CPU supports.
#include <string_view>
#include <vector>

#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
// Parses an ISA name; throws af::Error(kInvalidArgument) naming the valid ones.
Isa parse_isa(std::string_view name);
// ISAs this CPU can run, in increasing order; always starts with kScalar.
const std::vector<Isa>& supported_isas();
bool isa_supported(Isa isa);
Isa best_isa();
// The table of `isa`; throws af::Error(kUnsupported) if this CPU lacks it.
const KernelTable& kernel_table(Isa isa);
// True when the CPU has AVX512_VNNI and AVX512_BF16 (beyond the kAvx512 set).
bool cpu_has_avx512_vnni_bf16();
// True when the CPU has AVX-VNNI (the VEX-encoded 256-bit vpdpbusd) beside the kAvx2 set, as
// many CPUs without AVX-512 do (Intel since Alder Lake, AMD since Zen 5).
bool cpu_has_avx_vnni();
// "" picks the best; otherwise as parse_isa + kernel_table.
const KernelTable& kernel_table_for(std::string_view isa_option);

}  // namespace af::cpu
