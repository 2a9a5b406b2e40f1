#include "af/io/gguf_writer.hpp"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string_view>

#include "af/core/error.hpp"
#include "io/utf8.hpp"

namespace af::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF writer stores fields in host byte order");

constexpr const char* kComponent = "gguf_writer";
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;

bool is_unsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}
bool is_signed(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}
bool is_float(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

uint64_t unsigned_max(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return 0xff;
    case GgufType::kUint16:
      return 0xffff;
    case GgufType::kUint32:
      return 0xffffffffu;
    default:
      return std::numeric_limits<uint64_t>::max();
  }
}

int64_t signed_bits(GgufType t) {
  switch (t) {
    case GgufType::kInt8:
      return 8;
    case GgufType::kInt16:
      return 16;
    case GgufType::kInt32:
      return 32;
    default:
      return 64;
  }
}

// GgufArray checks each element's type and range as it is appended; what is left is the nesting
// depth the reader accepts.
void validate_array(const GgufArray& a, const std::string& what, int depth) {
  AF_CHECK(depth < kMaxArrayDepth, ErrorCode::kInvalidArgument, kComponent, what,
           ": arrays nest deeper than ", kMaxArrayDepth, " levels");
  if (a.type() != GgufType::kArray) return;
  for (size_t i = 0; i < a.size(); ++i) validate_array(a.array_at(i, what), what, depth + 1);
}

// Checks that the variant member matches the declared type and the value fits it, so that
// write() can encode without further questions. `what` names the key for messages.
void validate(const GgufValue& v, const std::string& what, int depth) {
  const uint32_t id = static_cast<uint32_t>(v.type);
  AF_CHECK(id <= static_cast<uint32_t>(GgufType::kFloat64), ErrorCode::kInvalidArgument, kComponent,
           what, ": unknown value type ", id);
  if (is_unsigned(v.type)) {
    const auto* u = std::get_if<uint64_t>(&v.value);
    AF_CHECK(u != nullptr, ErrorCode::kInvalidArgument, kComponent, what,
             ": unsigned type without an unsigned value");
    AF_CHECK(*u <= unsigned_max(v.type), ErrorCode::kInvalidArgument, kComponent, what, ": value ",
             *u, " does not fit its type");
  } else if (is_signed(v.type)) {
    const auto* i = std::get_if<int64_t>(&v.value);
    AF_CHECK(i != nullptr, ErrorCode::kInvalidArgument, kComponent, what,
             ": signed type without a signed value");
    const int64_t bits = signed_bits(v.type);
    if (bits < 64) {
      const int64_t hi = (int64_t{1} << (bits - 1)) - 1;
      AF_CHECK(*i >= -hi - 1 && *i <= hi, ErrorCode::kInvalidArgument, kComponent, what, ": value ",
               *i, " does not fit its type");
    }
  } else if (is_float(v.type)) {
    AF_CHECK(std::holds_alternative<double>(v.value), ErrorCode::kInvalidArgument, kComponent, what,
             ": float type without a float value");
  } else if (v.type == GgufType::kBool) {
    AF_CHECK(std::holds_alternative<bool>(v.value), ErrorCode::kInvalidArgument, kComponent, what,
             ": bool type without a bool value");
  } else if (v.type == GgufType::kString) {
    const auto* s = std::get_if<std::string>(&v.value);
    AF_CHECK(s != nullptr, ErrorCode::kInvalidArgument, kComponent, what,
             ": string type without a string value");
    AF_CHECK(detail::valid_utf8(*s), ErrorCode::kInvalidArgument, kComponent, what,
             ": string is not valid UTF-8");
  } else {
    const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v.value);
    AF_CHECK(a != nullptr && *a != nullptr, ErrorCode::kInvalidArgument, kComponent, what,
             ": array type without an array value");
    validate_array(**a, what, depth);
  }
}

// Buffered sequential file output; every failure names the file.
class Output {
 public:
  explicit Output(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "wb")) {
    AF_CHECK(file_ != nullptr, ErrorCode::kIo, kComponent, "cannot create ", path, ": ",
             std::strerror(errno));
  }
  ~Output() {
    if (file_) std::fclose(file_);
  }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  void bytes(const void* p, size_t n) {
    if (n == 0) return;
    AF_CHECK(std::fwrite(p, 1, n, file_) == n, ErrorCode::kIo, kComponent, "writing ", path_,
             " failed: ", std::strerror(errno));
    pos_ += n;
  }
  template <class T>
  void put(T v) {
    bytes(&v, sizeof v);
  }
  void string(std::string_view s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const char kZeros[256] = {};
    uint64_t pad = (alignment - pos_ % alignment) % alignment;
    while (pad > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(pad, sizeof kZeros));
      bytes(kZeros, n);
      pad -= n;
    }
  }
  uint64_t pos() const { return pos_; }
  void close() {
    const int rc = std::fclose(file_);
    file_ = nullptr;
    AF_CHECK(rc == 0, ErrorCode::kIo, kComponent, "closing ", path_,
             " failed: ", std::strerror(errno));
  }

 private:
  std::string path_;
  std::FILE* file_;
  uint64_t pos_ = 0;
};

void put_array(Output& out, const GgufArray& a) {
  out.put(static_cast<uint32_t>(a.type()));
  out.put<uint64_t>(a.size());
  if (a.type() == GgufType::kString) {
    for (size_t i = 0; i < a.size(); ++i) out.string(a.string_at(i, ""));
  } else if (a.type() == GgufType::kArray) {
    for (size_t i = 0; i < a.size(); ++i) put_array(out, a.array_at(i, ""));
  } else {
    // Fixed-size elements are held as their little-endian file bytes.
    const std::span<const std::byte> raw = a.raw_bytes();
    out.bytes(raw.data(), raw.size());
  }
}

void put_value(Output& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kUint8:
      return out.put(static_cast<uint8_t>(std::get<uint64_t>(v.value)));
    case GgufType::kUint16:
      return out.put(static_cast<uint16_t>(std::get<uint64_t>(v.value)));
    case GgufType::kUint32:
      return out.put(static_cast<uint32_t>(std::get<uint64_t>(v.value)));
    case GgufType::kUint64:
      return out.put(std::get<uint64_t>(v.value));
    case GgufType::kInt8:
      return out.put(static_cast<int8_t>(std::get<int64_t>(v.value)));
    case GgufType::kInt16:
      return out.put(static_cast<int16_t>(std::get<int64_t>(v.value)));
    case GgufType::kInt32:
      return out.put(static_cast<int32_t>(std::get<int64_t>(v.value)));
    case GgufType::kInt64:
      return out.put(std::get<int64_t>(v.value));
    case GgufType::kFloat32:
      return out.put(static_cast<float>(std::get<double>(v.value)));
    case GgufType::kFloat64:
      return out.put(std::get<double>(v.value));
    case GgufType::kBool:
      return out.put(static_cast<uint8_t>(std::get<bool>(v.value) ? 1 : 0));
    case GgufType::kString:
      return out.string(std::get<std::string>(v.value));
    case GgufType::kArray:
      return put_array(out, *std::get<std::shared_ptr<GgufArray>>(v.value));
  }
}

}  // namespace

GgufValue gguf_uint(GgufType type, uint64_t v) {
  AF_CHECK(is_unsigned(type), ErrorCode::kInvalidArgument, kComponent,
           "gguf_uint: type is not an unsigned integer type");
  GgufValue out{type, v};
  validate(out, "gguf_uint", 0);
  return out;
}

GgufValue gguf_int(GgufType type, int64_t v) {
  AF_CHECK(is_signed(type), ErrorCode::kInvalidArgument, kComponent,
           "gguf_int: type is not a signed integer type");
  GgufValue out{type, v};
  validate(out, "gguf_int", 0);
  return out;
}

GgufValue gguf_float(GgufType type, double v) {
  AF_CHECK(is_float(type), ErrorCode::kInvalidArgument, kComponent,
           "gguf_float: type is not a float type");
  return GgufValue{type, v};
}

GgufValue gguf_bool(bool v) { return GgufValue{GgufType::kBool, v}; }

GgufValue gguf_string(std::string v) { return GgufValue{GgufType::kString, std::move(v)}; }

GgufValue gguf_array(GgufType element_type, std::vector<GgufValue> values) {
  auto a = std::make_shared<GgufArray>(element_type);
  a->reserve(values.size());
  for (const GgufValue& v : values) a->push_back(v);
  GgufValue out{GgufType::kArray, std::move(a)};
  validate(out, "gguf_array", 0);
  return out;
}

GgufValue gguf_string_array(const std::vector<std::string>& values) {
  auto a = std::make_shared<GgufArray>(GgufType::kString);
  a->reserve(values.size());
  for (const std::string& s : values) a->push_back(gguf_string(s));
  return GgufValue{GgufType::kArray, std::move(a)};
}

GgufValue gguf_f32_array(const std::vector<float>& values) {
  auto a = std::make_shared<GgufArray>(GgufType::kFloat32);
  a->append_raw(reinterpret_cast<const std::byte*>(values.data()), values.size(), "f32 array");
  return GgufValue{GgufType::kArray, std::move(a)};
}

GgufValue gguf_i32_array(const std::vector<int32_t>& values) {
  auto a = std::make_shared<GgufArray>(GgufType::kInt32);
  a->append_raw(reinterpret_cast<const std::byte*>(values.data()), values.size(), "i32 array");
  return GgufValue{GgufType::kArray, std::move(a)};
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  AF_CHECK(!key.empty(), ErrorCode::kInvalidArgument, kComponent, "empty metadata key");
  AF_CHECK(detail::valid_utf8(key), ErrorCode::kInvalidArgument, kComponent, "metadata key '", key,
           "' is not valid UTF-8");
  validate(value, "metadata key '" + key + "'", 0);
  if (key == "general.alignment") {
    int64_t a = 0;
    try {
      a = value.as_int(key);
    } catch (const Error&) {
      fail(ErrorCode::kInvalidArgument, kComponent, "general.alignment must be an integer");
    }
    AF_CHECK(a > 0 && std::has_single_bit(static_cast<uint64_t>(a)), ErrorCode::kInvalidArgument,
             kComponent, "general.alignment ", a, " is not a nonzero power of two");
  }
  auto it = index_.find(key);
  if (it != index_.end()) {
    metadata_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, metadata_.size());
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  metadata_.erase(metadata_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < metadata_.size(); ++i) index_.emplace(metadata_[i].first, i);
}

void GgufWriter::set_alignment(uint32_t alignment) { set_u32("general.alignment", alignment); }

uint64_t GgufWriter::alignment() const {
  auto it = index_.find("general.alignment");
  if (it == index_.end()) return kDefaultAlignment;
  return static_cast<uint64_t>(metadata_[it->second].second.as_int("general.alignment"));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const Shape& shape, Fill fill) {
  AF_CHECK(!name.empty(), ErrorCode::kInvalidArgument, kComponent, "empty tensor name");
  AF_CHECK(detail::valid_utf8(name), ErrorCode::kInvalidArgument, kComponent, "tensor name '", name,
           "' is not valid UTF-8");
  AF_CHECK(tensor_index_.count(name) == 0, ErrorCode::kInvalidArgument, kComponent,
           "duplicate tensor '", name, "'");
  AF_CHECK(shape.rank() >= 1 && shape.rank() <= kMaxDims, ErrorCode::kInvalidArgument, kComponent,
           "tensor '", name, "' has rank ", shape.rank(), " (GGUF allows 1 to ", kMaxDims, ")");
  AF_CHECK(static_cast<bool>(fill), ErrorCode::kInvalidArgument, kComponent, "tensor '", name,
           "' has no data source");
  const DTypeInfo& ti = info(dtype);
  const int64_t row = shape[shape.rank() - 1];
  AF_CHECK(row % ti.block_size == 0, ErrorCode::kInvalidArgument, kComponent, "tensor '", name,
           "': row of ", row, " elements is not a multiple of the ", ti.name, " block size ",
           ti.block_size);
  int64_t nbytes = 0;
  try {
    nbytes = row_bytes(dtype, row);
  } catch (const Error& e) {
    fail(ErrorCode::kInvalidArgument, kComponent, "tensor '", name, "': ", e.what());
  }
  for (int d = 0; d + 1 < shape.rank(); ++d) {
    AF_CHECK(checked_mul(nbytes, shape[d], &nbytes), ErrorCode::kInvalidArgument, kComponent,
             "tensor '", name, "': byte size overflows");
  }
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({name, dtype, shape, static_cast<uint64_t>(nbytes), std::move(fill)});
}

void GgufWriter::add_tensor(const std::string& name, const Tensor& tensor) {
  AF_CHECK(tensor.defined(), ErrorCode::kInvalidArgument, kComponent, "tensor '", name,
           "' is empty (no buffer)");
  add_tensor(name, tensor.dtype(), tensor.shape(), [tensor, name](std::span<std::byte> dst) {
    AF_CHECK(dst.size() == tensor.nbytes(), ErrorCode::kInternal, kComponent, "tensor '", name,
             "': ", tensor.nbytes(), " bytes for a slot of ", dst.size());
    if (!dst.empty()) std::memcpy(dst.data(), tensor.data(), dst.size());
  });
}

void GgufWriter::write(const std::string& path) const {
  const uint64_t align = alignment();
  // Offsets first: tensor i starts at the first multiple of the alignment after tensor i - 1.
  std::vector<uint64_t> offsets(tensors_.size());
  uint64_t data_size = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    data_size = (data_size + align - 1) / align * align;
    offsets[i] = data_size;
    data_size += tensors_[i].nbytes;
  }

  const std::string tmp = path + ".partial";
  try {
    Output out(tmp);
    out.bytes("GGUF", 4);
    out.put<uint32_t>(kVersion);
    out.put<uint64_t>(tensors_.size());
    out.put<uint64_t>(metadata_.size());
    for (const auto& [key, value] : metadata_) {
      out.string(key);
      out.put(static_cast<uint32_t>(value.type));
      put_value(out, value);
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const PendingTensor& t = tensors_[i];
      out.string(t.name);
      out.put<uint32_t>(static_cast<uint32_t>(t.shape.rank()));
      for (int d = t.shape.rank() - 1; d >= 0; --d) out.put<int64_t>(t.shape[d]);  // innermost 1st
      out.put<uint32_t>(static_cast<uint32_t>(t.dtype));
      out.put<uint64_t>(offsets[i]);
    }
    out.pad_to(align);
    const uint64_t data_start = out.pos();
    std::vector<std::byte> scratch;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const PendingTensor& t = tensors_[i];
      out.pad_to(align);
      AF_CHECK(out.pos() - data_start == offsets[i], ErrorCode::kInternal, kComponent, "tensor '",
               t.name, "' landed at the wrong offset");
      scratch.assign(static_cast<size_t>(t.nbytes), std::byte{0});
      t.fill(std::span<std::byte>(scratch.data(), scratch.size()));
      out.bytes(scratch.data(), scratch.size());
    }
    out.close();
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    AF_CHECK(!ec, ErrorCode::kIo, kComponent, "cannot rename ", tmp, " to ", path, ": ",
             ec.message());
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

}  // namespace af::io
