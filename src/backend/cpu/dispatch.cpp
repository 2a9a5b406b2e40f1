#include "backend/cpu/dispatch.hpp"

#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "af/core/error.hpp"

namespace af::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// F16C is CPUID leaf 1, ECX bit 29; asked directly because clang's __builtin_cpu_supports does
// not know the name.
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

std::vector<Isa> detect() {
  std::vector<Isa> isas = {Isa::kScalar};
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  if (avx2) isas.push_back(Isa::kAvx2);
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    isas.push_back(Isa::kAvx512);
  }
#endif
  return isas;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Isa parse_isa(std::string_view name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (name == isa_name(isa)) return isa;
  }
  fail(ErrorCode::kInvalidArgument, "cpu", "unknown ISA '", std::string(name),
       "' (expected \"\", \"scalar\", \"avx2\" or \"avx512\")");
}

const std::vector<Isa>& supported_isas() {
  static const std::vector<Isa> kIsas = detect();
  return kIsas;
}

bool isa_supported(Isa isa) {
  for (Isa s : supported_isas()) {
    if (s == isa) return true;
  }
  return false;
}

Isa best_isa() { return supported_isas().back(); }

const KernelTable& kernel_table(Isa isa) {
  AF_CHECK(isa_supported(isa), ErrorCode::kUnsupported, "cpu", "this CPU does not support ISA '",
           isa_name(isa), "'");
  switch (isa) {
    case Isa::kAvx2:
      return avx2_kernel_table();
    case Isa::kAvx512:
      return avx512_kernel_table();
    case Isa::kScalar:
      break;
  }
  return scalar_kernel_table();
}

bool cpu_has_avx512_vnni_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool kHas = [] {
    if (!isa_supported(Isa::kAvx512)) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // Leaf 7 sub-leaf 0: ECX bit 11 is AVX512_VNNI; sub-leaf 1: EAX bit 5 is AVX512_BF16.
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || (ecx & (1u << 11)) == 0) return false;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 5)) != 0;
  }();
  return kHas;
#else
  return false;
#endif
}

bool cpu_has_avx_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool kHas = [] {
    if (!isa_supported(Isa::kAvx2)) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // Leaf 7 sub-leaf 1: EAX bit 4 is AVX-VNNI.
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) != 0;
  }();
  return kHas;
#else
  return false;
#endif
}

const KernelTable& kernel_table_for(std::string_view isa_option) {
  return kernel_table(isa_option.empty() ? best_isa() : parse_isa(isa_option));
}

}  // namespace af::cpu
