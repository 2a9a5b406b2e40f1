#include "af/core/dtype.hpp"

#include <array>
#include <cctype>
#include <string>

#include "af/core/error.hpp"
#include "af/core/shape.hpp"

namespace af {
namespace {

struct Entry {
  uint32_t id;
  DTypeInfo info;
};

// Block sizes and bytes per block of ggml's storage types (ggml.h / ggml-common.h layouts).
constexpr std::array<Entry, 33> kTypes{{
    {0, {"f32", 1, 4, false}},        {1, {"f16", 1, 2, false}},
    {2, {"q4_0", 32, 18, true}},      {3, {"q4_1", 32, 20, true}},
    {6, {"q5_0", 32, 22, true}},      {7, {"q5_1", 32, 24, true}},
    {8, {"q8_0", 32, 34, true}},      {9, {"q8_1", 32, 36, true}},
    {10, {"q2_K", 256, 84, true}},    {11, {"q3_K", 256, 110, true}},
    {12, {"q4_K", 256, 144, true}},   {13, {"q5_K", 256, 176, true}},
    {14, {"q6_K", 256, 210, true}},   {15, {"q8_K", 256, 292, true}},
    {16, {"iq2_xxs", 256, 66, true}}, {17, {"iq2_xs", 256, 74, true}},
    {18, {"iq3_xxs", 256, 98, true}}, {19, {"iq1_s", 256, 50, true}},
    {20, {"iq4_nl", 32, 18, true}},   {21, {"iq3_s", 256, 110, true}},
    {22, {"iq2_s", 256, 82, true}},   {23, {"iq4_xs", 256, 136, true}},
    {24, {"i8", 1, 1, false}},        {25, {"i16", 1, 2, false}},
    {26, {"i32", 1, 4, false}},       {27, {"i64", 1, 8, false}},
    {28, {"f64", 1, 8, false}},       {29, {"iq1_m", 256, 56, true}},
    {30, {"bf16", 1, 2, false}},      {34, {"tq1_0", 256, 54, true}},
    {35, {"tq2_0", 256, 66, true}},   {39, {"mxfp4", 32, 17, true}},
    {0xffffffffu, {"", 0, 0, false}},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_type_id) {
  for (const Entry& e : kTypes) {
    if (e.id == ggml_type_id && e.info.block_size > 0) return e.info;
  }
  return std::nullopt;
}

const DTypeInfo& info(DType dtype) {
  for (const Entry& e : kTypes) {
    if (e.id == static_cast<uint32_t>(dtype)) return e.info;
  }
  fail(ErrorCode::kInternal, "dtype", "unknown dtype id ", static_cast<uint32_t>(dtype));
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : kTypes) {
    std::string candidate(e.info.name);
    for (char& c : candidate) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (e.info.block_size > 0 && candidate == lower) return static_cast<DType>(e.id);
  }
  return std::nullopt;
}

int64_t row_bytes(DType dtype, int64_t n) {
  const DTypeInfo& i = info(dtype);
  AF_CHECK(n >= 0 && n % i.block_size == 0, ErrorCode::kFormat, "dtype", "row of ", n,
           " elements is not a multiple of the ", i.name, " block size ", i.block_size);
  int64_t bytes = 0;
  AF_CHECK(checked_mul(n / i.block_size, i.type_size, &bytes), ErrorCode::kFormat, "dtype",
           "byte size of ", n, " ", i.name, " elements overflows");
  return bytes;
}

}  // namespace af
