#include "af/io/safetensors.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include "af/core/error.hpp"
#include "io/json_util.hpp"

namespace af::io {
namespace {

constexpr const char* kComponent = "safetensors";

struct StDType {
  std::string_view name;
  int64_t size;                // bytes per element
  std::optional<DType> dtype;  // nullopt: valid safetensors type that af::DType lacks
};

// Every safetensors dtype with a whole-byte element size. Sub-byte types (F4, F6_*) cannot be
// sized per element and are rejected as unknown.
constexpr StDType kDTypes[] = {
    {"F64", 8, DType::F64},       {"F32", 4, DType::F32},       {"F16", 2, DType::F16},
    {"BF16", 2, DType::BF16},     {"I64", 8, DType::I64},       {"I32", 4, DType::I32},
    {"I16", 2, DType::I16},       {"I8", 1, DType::I8},         {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},     {"U16", 2, std::nullopt},     {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},    {"F8_E5M2", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt},
    {"F8_E8M0", 1, std::nullopt}, {"C64", 8, std::nullopt},
};

const StDType* find_dtype(std::string_view name) {
  for (const StDType& d : kDTypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

// A JSON number that is an integer in [0, INT64_MAX]; nullopt otherwise (floats, negatives,
// values nlohmann had to store as double because they exceed uint64).
std::optional<int64_t> non_negative_int(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return std::nullopt;
    return i;
  }
  return std::nullopt;
}

struct Parsed {
  SafeTensorsEntry entry;
  const StDType* type = nullptr;
};

Parsed parse_entry(const std::string& origin, const std::string& name, const nlohmann::json& info,
                   uint64_t data_size) {
  auto bad = [&](const auto&... what) {
    fail(ErrorCode::kFormat, kComponent, origin, ": tensor '", name, "': ", what...);
  };
  if (!info.is_object()) bad("header entry is not a JSON object");

  auto dtype_it = info.find("dtype");
  if (dtype_it == info.end() || !dtype_it->is_string()) bad("missing or non-string \"dtype\"");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const StDType* type = find_dtype(dtype_name);
  AF_CHECK(type != nullptr, ErrorCode::kUnsupported, kComponent, origin, ": tensor '", name,
           "' has unsupported dtype ", dtype_name);

  auto shape_it = info.find("shape");
  if (shape_it == info.end() || !shape_it->is_array()) bad("missing or non-array \"shape\"");
  if (shape_it->size() > static_cast<size_t>(Shape::kMaxRank))
    bad("rank ", shape_it->size(), " exceeds the maximum of ", Shape::kMaxRank);
  int64_t dims[Shape::kMaxRank] = {};
  int rank = 0;
  int64_t numel = 1;
  for (const nlohmann::json& d : *shape_it) {
    std::optional<int64_t> dim = non_negative_int(d);
    if (!dim) bad("shape entry ", d.dump(), " is not a non-negative integer");
    if (!checked_mul(numel, *dim, &numel))
      bad("element count of shape ", shape_it->dump(), " overflows");
    dims[rank++] = *dim;
  }
  int64_t expected = 0;
  if (!checked_mul(numel, type->size, &expected))
    bad("byte size of shape ", shape_it->dump(), " overflows");

  auto off_it = info.find("data_offsets");
  if (off_it == info.end() || !off_it->is_array() || off_it->size() != 2)
    bad("\"data_offsets\" must be an array [begin, end]");
  std::optional<int64_t> begin = non_negative_int((*off_it)[0]);
  std::optional<int64_t> end = non_negative_int((*off_it)[1]);
  if (!begin || !end) bad("data_offsets ", off_it->dump(), " are not non-negative integers");
  if (*begin > *end) bad("data_offsets ", off_it->dump(), " end before they begin");
  if (static_cast<uint64_t>(*end) > data_size)
    bad("data_offsets ", off_it->dump(), " exceed the data section of ", data_size, " bytes");
  if (*end - *begin != expected)
    bad("data_offsets ", off_it->dump(), " span ", *end - *begin, " bytes but ", dtype_name, " ",
        shape_it->dump(), " needs ", expected);

  Parsed p;
  p.type = type;
  p.entry.name = name;
  p.entry.dtype = type->dtype.value_or(DType::F32);  // unused when type->dtype is empty
  p.entry.shape = Shape::from(dims, rank);
  p.entry.begin = static_cast<uint64_t>(*begin);
  p.entry.end = static_cast<uint64_t>(*end);
  return p;
}

}  // namespace

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  return parse(std::make_shared<MappedFile>(path), path);
}

SafeTensorsFile SafeTensorsFile::parse(std::shared_ptr<const Buffer> buffer,
                                       const std::string& origin) {
  AF_CHECK(buffer != nullptr, ErrorCode::kInvalidArgument, kComponent, origin, ": no buffer");
  const uint64_t size = buffer->size();
  AF_CHECK(size >= 8, ErrorCode::kFormat, kComponent, origin, ": file of ", size,
           " bytes is too small for the 8-byte header length");
  unsigned char len_bytes[8];
  std::memcpy(len_bytes, buffer->data(), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len_bytes[i];
  // Checked against the real size before anything is read or allocated.
  AF_CHECK(header_len <= size - 8, ErrorCode::kFormat, kComponent, origin, ": header length ",
           header_len, " exceeds the ", size - 8, " bytes after the length field");

  const char* header_begin = reinterpret_cast<const char*>(buffer->data() + 8);
  detail::JsonLimits limits;
  limits.reject_duplicate_keys = true;
  nlohmann::json header = detail::parse_json(std::string_view(header_begin, header_len),
                                             origin + " (header)", kComponent, limits);
  AF_CHECK(header.is_object(), ErrorCode::kFormat, kComponent, origin,
           ": header is not a JSON object");

  SafeTensorsFile file;
  file.origin_ = origin;
  file.buffer_ = buffer;
  file.data_section_ = buffer->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  std::vector<SafeTensorsEntry> all;  // supported and unsupported, for the overlap check
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      AF_CHECK(info.is_object(), ErrorCode::kFormat, kComponent, origin,
               ": __metadata__ is not a JSON object");
      for (const auto& [key, value] : info.items()) {
        AF_CHECK(value.is_string(), ErrorCode::kFormat, kComponent, origin, ": __metadata__ \"",
                 key, "\" is not a string");
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    Parsed p = parse_entry(origin, name, info, data_size);
    all.push_back(p.entry);
    if (p.type->dtype) {
      file.index_[name] = file.entries_.size();
      file.entries_.push_back(std::move(p.entry));
    } else {
      file.unsupported_[name] = std::string(p.type->name);
    }
  }

  // Overlapping tensors would alias each other's bytes; empty tensors cannot overlap anything.
  std::erase_if(all, [](const SafeTensorsEntry& e) { return e.begin == e.end; });
  std::sort(all.begin(), all.end(),
            [](const SafeTensorsEntry& a, const SafeTensorsEntry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < all.size(); ++i) {
    AF_CHECK(all[i - 1].end <= all[i].begin, ErrorCode::kFormat, kComponent, origin, ": tensors '",
             all[i - 1].name, "' [", all[i - 1].begin, ", ", all[i - 1].end, ") and '", all[i].name,
             "' [", all[i].begin, ", ", all[i].end, ") overlap");
  }
  return file;
}

bool SafeTensorsFile::has(const std::string& name) const {
  return index_.count(name) != 0 || unsupported_.count(name) != 0;
}

Tensor SafeTensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    auto u = unsupported_.find(name);
    AF_CHECK(u == unsupported_.end(), ErrorCode::kUnsupported, kComponent, origin_, ": tensor '",
             name, "' has unsupported dtype ", u->second);
    fail(ErrorCode::kInvalidArgument, kComponent, origin_, ": no tensor named '", name, "'");
  }
  const SafeTensorsEntry& e = entries_[it->second];
  const std::byte* data = data_section_ + e.begin;
  // Writers normally pad the header so data is aligned, but the format does not require it;
  // kernels read through typed pointers, so a misaligned tensor gets an aligned copy.
  const size_t align = static_cast<size_t>(std::min<int64_t>(info(e.dtype).type_size, 8));
  if (reinterpret_cast<uintptr_t>(data) % align != 0) {
    Tensor copy = Tensor::zeros(e.dtype, e.shape);
    if (copy.nbytes()) std::memcpy(copy.mutable_data(), data, copy.nbytes());
    return copy;
  }
  return Tensor(e.dtype, e.shape, buffer_, data);
}

}  // namespace af::io
