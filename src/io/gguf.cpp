#include "af/io/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "af/core/error.hpp"
#include "io/utf8.hpp"

namespace af::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader copies little-endian fields directly");

constexpr const char* kComponent = "gguf";
// GGML_MAX_DIMS: ggml tensors have at most four dimensions.
constexpr uint32_t kMaxDims = 4;
// The format allows arrays of arrays; real files use at most one level. The bound keeps a
// hostile file from recursing deeply.
constexpr int kMaxArrayDepth = 8;

const char* type_name(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "unknown";
}

// The fewest bytes one value of type `t` occupies in the file (a string is at least its length
// field, an array at least its element type and count). Used to reject counts that cannot fit.
uint64_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kString:
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kArray:
      return 12;
  }
  return 1;
}

// Bytes per element of a fixed-size type; 0 for strings and arrays.
size_t fixed_width(GgufType t) {
  return t == GgufType::kString || t == GgufType::kArray ? 0 : min_encoded_size(t);
}

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Bounds-checked little-endian reader over the file bytes. Every read names what it was
// reading so that a truncated file says where it ended.
class Cursor {
 public:
  Cursor(const std::byte* data, uint64_t size, const std::string& origin)
      : data_(data), size_(size), origin_(origin) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    AF_CHECK(n <= remaining(), ErrorCode::kFormat, kComponent, origin_, ": truncated in ", what,
             ": needs ", n, " bytes at offset ", pos_, " but only ", remaining(), " remain");
  }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // The next `n` bytes, checked against the end.
  const std::byte* take(uint64_t n, const std::string& what) {
    need(n, what);
    const std::byte* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  // A length-prefixed string as a view of the file bytes (not yet checked for UTF-8).
  std::string_view read_string_view(const std::string& what) {
    uint64_t len = read<uint64_t>(what);
    // Checked before anything is allocated: a claimed length of 2^62 fails here.
    const std::byte* p = take(len, what);
    return {reinterpret_cast<const char*>(p), static_cast<size_t>(len)};
  }

  std::string read_string(const std::string& what) {
    std::string s(read_string_view(what));
    AF_CHECK(detail::valid_utf8(s), ErrorCode::kFormat, kComponent, origin_, ": ", what,
             " is not valid UTF-8");
    return s;
  }

  const std::string& origin() const { return origin_; }

 private:
  const std::byte* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& origin_;
};

GgufType read_type(Cursor& in, const std::string& what) {
  uint32_t id = in.read<uint32_t>(what);
  AF_CHECK(id <= static_cast<uint32_t>(GgufType::kFloat64), ErrorCode::kFormat, kComponent,
           in.origin(), ": ", what, " has unknown value type ", id);
  return static_cast<GgufType>(id);
}

GgufArray read_array(Cursor& in, const std::string& what, int depth) {
  AF_CHECK(depth < kMaxArrayDepth, ErrorCode::kFormat, kComponent, in.origin(), ": ", what,
           " nests arrays deeper than ", kMaxArrayDepth, " levels");
  GgufArray array(read_type(in, what));
  const uint64_t count = in.read<uint64_t>(what);
  // Every element takes at least min_encoded_size bytes, so a count the remaining bytes cannot
  // hold is rejected before anything is reserved.
  const uint64_t min_size = min_encoded_size(array.type());
  AF_CHECK(count <= in.remaining() / min_size, ErrorCode::kFormat, kComponent, in.origin(), ": ",
           what, " claims ", count, " ", type_name(array.type()), " elements (at least ", min_size,
           " bytes each) but only ", in.remaining(), " bytes remain");
  if (const size_t width = fixed_width(array.type())) {
    // One copy of the bytes as they are on disk.
    array.append_raw(in.take(count * width, what), static_cast<size_t>(count),
                     in.origin() + ": " + what);
    return array;
  }
  // Nested arrays are not reserved: each takes 12 file bytes but ~90 in memory, so they grow
  // only as their elements are actually read.
  if (array.type() == GgufType::kString) array.reserve(static_cast<size_t>(count));
  const std::string where = in.origin() + ": " + what;
  for (uint64_t i = 0; i < count; ++i) {
    if (array.type() == GgufType::kString) {
      array.append_string(in.read_string_view(what), where);
    } else {
      array.append_array(read_array(in, what, depth + 1));
    }
  }
  return array;
}

GgufValue read_value(Cursor& in, GgufType type, const std::string& what, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::kUint8:
      v.value = uint64_t{in.read<uint8_t>(what)};
      break;
    case GgufType::kInt8:
      v.value = int64_t{in.read<int8_t>(what)};
      break;
    case GgufType::kUint16:
      v.value = uint64_t{in.read<uint16_t>(what)};
      break;
    case GgufType::kInt16:
      v.value = int64_t{in.read<int16_t>(what)};
      break;
    case GgufType::kUint32:
      v.value = uint64_t{in.read<uint32_t>(what)};
      break;
    case GgufType::kInt32:
      v.value = int64_t{in.read<int32_t>(what)};
      break;
    case GgufType::kUint64:
      v.value = uint64_t{in.read<uint64_t>(what)};
      break;
    case GgufType::kInt64:
      v.value = int64_t{in.read<int64_t>(what)};
      break;
    case GgufType::kFloat32:
      v.value = double{in.read<float>(what)};
      break;
    case GgufType::kFloat64:
      v.value = double{in.read<double>(what)};
      break;
    case GgufType::kBool: {
      uint8_t b = in.read<uint8_t>(what);
      AF_CHECK(b <= 1, ErrorCode::kFormat, kComponent, in.origin(), ": ", what,
               " holds bool value ", int{b}, " (must be 0 or 1)");
      v.value = b == 1;
      break;
    }
    case GgufType::kString:
      v.value = in.read_string(what);
      break;
    case GgufType::kArray:
      v.value = std::make_shared<GgufArray>(read_array(in, what, depth));
      break;
  }
  return v;
}

uint64_t align_up(uint64_t x, uint64_t alignment, const std::string& origin) {
  uint64_t r = x % alignment;
  if (r == 0) return x;
  uint64_t out = 0;
  AF_CHECK(!__builtin_add_overflow(x, alignment - r, &out), ErrorCode::kFormat, kComponent, origin,
           ": aligning offset ", x, " to ", alignment, " overflows");
  return out;
}

[[noreturn]] void wrong_type(const std::string& key, GgufType type, const char* wanted) {
  fail(ErrorCode::kFormat, kComponent, "metadata key '", key, "' has type ", type_name(type),
       ", expected ", wanted);
}

}  // namespace

int64_t GgufValue::as_int(const std::string& key) const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    AF_CHECK(*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), ErrorCode::kFormat,
             kComponent, "metadata key '", key, "' value ", *u, " does not fit int64");
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  wrong_type(key, type, "an integer");
}

double GgufValue::as_float(const std::string& key) const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  wrong_type(key, type, "a number");
}

bool GgufValue::as_bool(const std::string& key) const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  wrong_type(key, type, "bool");
}

const std::string& GgufValue::as_string(const std::string& key) const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  wrong_type(key, type, "string");
}

const GgufArray& GgufValue::as_array(const std::string& key) const {
  if (const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&value)) return **a;
  wrong_type(key, type, "array");
}

GgufArray::GgufArray(GgufType type) : type_(type) {
  AF_CHECK(static_cast<uint32_t>(type) <= static_cast<uint32_t>(GgufType::kFloat64),
           ErrorCode::kInvalidArgument, kComponent, "unknown array element type ",
           static_cast<uint32_t>(type));
}

void GgufArray::check_index(size_t i, const std::string& key) const {
  AF_CHECK(i < size_, ErrorCode::kOutOfRange, kComponent, "metadata key '", key, "': index ", i,
           " is past its ", size_, " elements");
}

GgufValue GgufArray::at(size_t i) const {
  check_index(i, "");
  GgufValue v;
  v.type = type_;
  const std::byte* p = bytes_.data() + i * fixed_width(type_);
  switch (type_) {
    case GgufType::kUint8:
      v.value = uint64_t{load<uint8_t>(p)};
      break;
    case GgufType::kInt8:
      v.value = int64_t{load<int8_t>(p)};
      break;
    case GgufType::kUint16:
      v.value = uint64_t{load<uint16_t>(p)};
      break;
    case GgufType::kInt16:
      v.value = int64_t{load<int16_t>(p)};
      break;
    case GgufType::kUint32:
      v.value = uint64_t{load<uint32_t>(p)};
      break;
    case GgufType::kInt32:
      v.value = int64_t{load<int32_t>(p)};
      break;
    case GgufType::kUint64:
      v.value = load<uint64_t>(p);
      break;
    case GgufType::kInt64:
      v.value = load<int64_t>(p);
      break;
    case GgufType::kFloat32:
      v.value = double{load<float>(p)};
      break;
    case GgufType::kFloat64:
      v.value = load<double>(p);
      break;
    case GgufType::kBool:
      v.value = load<uint8_t>(p) != 0;
      break;
    case GgufType::kString:
      v.value = std::string(string_at(i, ""));
      break;
    case GgufType::kArray:
      v.value = std::make_shared<GgufArray>(arrays_[i]);
      break;
  }
  return v;
}

// Fixed-size elements are decoded without allocating; GgufValue's accessors check the type and
// name the key.
int64_t GgufArray::int_at(size_t i, const std::string& key) const {
  check_index(i, key);
  return at(i).as_int(key);
}

double GgufArray::float_at(size_t i, const std::string& key) const {
  check_index(i, key);
  return at(i).as_float(key);
}

bool GgufArray::bool_at(size_t i, const std::string& key) const {
  check_index(i, key);
  return at(i).as_bool(key);
}

std::string_view GgufArray::string_at(size_t i, const std::string& key) const {
  if (type_ != GgufType::kString) wrong_type(key, type_, "string");
  check_index(i, key);
  const uint64_t begin = i == 0 ? 0 : ends_[i - 1];
  return {reinterpret_cast<const char*>(bytes_.data()) + begin,
          static_cast<size_t>(ends_[i] - begin)};
}

const GgufArray& GgufArray::array_at(size_t i, const std::string& key) const {
  if (type_ != GgufType::kArray) wrong_type(key, type_, "array");
  check_index(i, key);
  return arrays_[i];
}

std::span<const std::byte> GgufArray::raw_bytes() const {
  return fixed_width(type_) ? std::span<const std::byte>(bytes_) : std::span<const std::byte>();
}

void GgufArray::reserve(size_t n) {
  if (type_ == GgufType::kString) ends_.reserve(n);
  if (type_ == GgufType::kArray) arrays_.reserve(n);
  if (const size_t width = fixed_width(type_)) bytes_.reserve(n * width);
}

void GgufArray::append_raw(const std::byte* data, size_t count, const std::string& what) {
  const size_t width = fixed_width(type_);
  AF_CHECK(width != 0, ErrorCode::kInvalidArgument, kComponent, what, ": ", type_name(type_),
           " elements have no fixed size");
  if (type_ == GgufType::kBool) {
    for (size_t i = 0; i < count; ++i) {
      const uint8_t b = load<uint8_t>(data + i);
      AF_CHECK(b <= 1, ErrorCode::kFormat, kComponent, what, " holds bool value ", int{b},
               " at index ", size_ + i, " (must be 0 or 1)");
    }
  }
  bytes_.insert(bytes_.end(), data, data + count * width);
  size_ += count;
}

void GgufArray::append_string(std::string_view s, const std::string& what) {
  AF_CHECK(type_ == GgufType::kString, ErrorCode::kInvalidArgument, kComponent, what,
           ": a string in an array of ", type_name(type_));
  AF_CHECK(detail::valid_utf8(s), ErrorCode::kFormat, kComponent, what, " element ", size_,
           " is not valid UTF-8");
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  bytes_.insert(bytes_.end(), p, p + s.size());
  ends_.push_back(bytes_.size());
  ++size_;
}

void GgufArray::append_array(GgufArray a) {
  AF_CHECK(type_ == GgufType::kArray, ErrorCode::kInvalidArgument, kComponent,
           "an array in an array of ", type_name(type_));
  arrays_.push_back(std::move(a));
  ++size_;
}

namespace {

// `v` as the bytes of a `type` element; kInvalidArgument when it has another type or does not
// fit (the writer's value constructors make the same checks).
template <class T, class V>
void append_fixed(std::vector<std::byte>& out, V v, const GgufValue& value) {
  AF_CHECK(std::in_range<T>(v), ErrorCode::kInvalidArgument, kComponent, "value ", v,
           " does not fit an array of ", type_name(value.type));
  const T t = static_cast<T>(v);
  const auto* p = reinterpret_cast<const std::byte*>(&t);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace

void GgufArray::push_back(const GgufValue& v) {
  AF_CHECK(v.type == type_, ErrorCode::kInvalidArgument, kComponent, "a ", type_name(v.type),
           " value in an array of ", type_name(type_));
  const auto* u = std::get_if<uint64_t>(&v.value);
  const auto* i = std::get_if<int64_t>(&v.value);
  const auto* d = std::get_if<double>(&v.value);
  const auto* b = std::get_if<bool>(&v.value);
  const auto* s = std::get_if<std::string>(&v.value);
  const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v.value);
  const bool ok = [&] {
    switch (type_) {
      case GgufType::kUint8:
      case GgufType::kUint16:
      case GgufType::kUint32:
      case GgufType::kUint64:
        return u != nullptr;
      case GgufType::kInt8:
      case GgufType::kInt16:
      case GgufType::kInt32:
      case GgufType::kInt64:
        return i != nullptr;
      case GgufType::kFloat32:
      case GgufType::kFloat64:
        return d != nullptr;
      case GgufType::kBool:
        return b != nullptr;
      case GgufType::kString:
        return s != nullptr;
      case GgufType::kArray:
        return a != nullptr && *a != nullptr;
    }
    return false;
  }();
  AF_CHECK(ok, ErrorCode::kInvalidArgument, kComponent, "a ", type_name(type_),
           " array element whose value does not match its type");
  switch (type_) {
    case GgufType::kUint8:
      append_fixed<uint8_t>(bytes_, *u, v);
      break;
    case GgufType::kUint16:
      append_fixed<uint16_t>(bytes_, *u, v);
      break;
    case GgufType::kUint32:
      append_fixed<uint32_t>(bytes_, *u, v);
      break;
    case GgufType::kUint64:
      append_fixed<uint64_t>(bytes_, *u, v);
      break;
    case GgufType::kInt8:
      append_fixed<int8_t>(bytes_, *i, v);
      break;
    case GgufType::kInt16:
      append_fixed<int16_t>(bytes_, *i, v);
      break;
    case GgufType::kInt32:
      append_fixed<int32_t>(bytes_, *i, v);
      break;
    case GgufType::kInt64:
      append_fixed<int64_t>(bytes_, *i, v);
      break;
    case GgufType::kFloat32: {
      const float f = static_cast<float>(*d);
      const auto* p = reinterpret_cast<const std::byte*>(&f);
      bytes_.insert(bytes_.end(), p, p + sizeof f);
      break;
    }
    case GgufType::kFloat64: {
      const auto* p = reinterpret_cast<const std::byte*>(d);
      bytes_.insert(bytes_.end(), p, p + sizeof(double));
      break;
    }
    case GgufType::kBool:
      bytes_.push_back(std::byte{*b ? uint8_t{1} : uint8_t{0}});
      break;
    case GgufType::kString:
      AF_CHECK(detail::valid_utf8(*s), ErrorCode::kInvalidArgument, kComponent, "array element ",
               size_, ": string is not valid UTF-8");
      return append_string(*s, "array element");  // counts itself
    case GgufType::kArray:
      return append_array(**a);
  }
  ++size_;
}

GgufFile GgufFile::open(const std::string& path) {
  return parse(std::make_shared<MappedFile>(path), path);
}

GgufFile GgufFile::parse(std::shared_ptr<const Buffer> buffer, const std::string& origin) {
  AF_CHECK(buffer != nullptr, ErrorCode::kInvalidArgument, kComponent, origin, ": no buffer");
  GgufFile file;
  file.origin_ = origin;
  file.buffer_ = buffer;
  Cursor in(buffer->data(), buffer->size(), file.origin_);

  // Header: magic, version, tensor count, metadata count.
  in.need(4, "the magic");
  AF_CHECK(std::memcmp(buffer->data(), "GGUF", 4) == 0, ErrorCode::kFormat, kComponent, origin,
           ": not a GGUF file (bad magic)");
  in.read<uint32_t>("the magic");
  file.version_ = in.read<uint32_t>("the version");
  // A big-endian writer stores version 3 as 0x03000000.
  AF_CHECK(file.version_ < 0x10000, ErrorCode::kUnsupported, kComponent, origin, ": version field ",
           file.version_, " looks like a big-endian GGUF, which is not supported");
  AF_CHECK(file.version_ != 1, ErrorCode::kUnsupported, kComponent, origin,
           ": GGUF version 1 is not supported (32-bit counts); re-convert the model");
  AF_CHECK(file.version_ >= 2, ErrorCode::kFormat, kComponent, origin, ": invalid GGUF version ",
           file.version_);
  AF_CHECK(file.version_ <= 3, ErrorCode::kUnsupported, kComponent, origin, ": GGUF version ",
           file.version_, " is newer than the supported versions 2 and 3");
  uint64_t n_tensors = in.read<uint64_t>("the tensor count");
  uint64_t n_kv = in.read<uint64_t>("the metadata count");
  // A metadata pair is at least key length (8) + type (4) + one byte; a tensor info at least
  // name length (8) + n_dims (4) + type (4) + offset (8).
  AF_CHECK(n_kv <= in.remaining() / 13, ErrorCode::kFormat, kComponent, origin, ": header claims ",
           n_kv, " metadata pairs but only ", in.remaining(), " bytes remain");
  AF_CHECK(n_tensors <= in.remaining() / 24, ErrorCode::kFormat, kComponent, origin,
           ": header claims ", n_tensors, " tensors but only ", in.remaining(), " bytes remain");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.read_string("metadata key #" + std::to_string(i));
    AF_CHECK(!key.empty(), ErrorCode::kFormat, kComponent, origin, ": metadata key #", i,
             " is empty");
    const std::string what = "metadata key '" + key + "'";
    GgufType type = read_type(in, what);
    GgufValue value = read_value(in, type, what, 0);
    AF_CHECK(file.metadata_.emplace(key, std::move(value)).second, ErrorCode::kFormat, kComponent,
             origin, ": duplicate metadata key '", key, "'");
    file.metadata_keys_.push_back(key);
  }

  if (const GgufValue* a = file.find("general.alignment")) {
    int64_t alignment = 0;
    try {
      alignment = a->as_int("general.alignment");
    } catch (const Error& e) {
      fail(ErrorCode::kFormat, kComponent, origin, ": ", e.what());
    }
    AF_CHECK(alignment > 0 && std::has_single_bit(static_cast<uint64_t>(alignment)),
             ErrorCode::kFormat, kComponent, origin, ": general.alignment ", alignment,
             " is not a nonzero power of two");
    file.alignment_ = static_cast<uint64_t>(alignment);
  }

  file.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = in.read_string("the name of tensor #" + std::to_string(i));
    const std::string what = "tensor '" + t.name + "'";
    AF_CHECK(!t.name.empty(), ErrorCode::kFormat, kComponent, origin, ": tensor #", i,
             " has an empty name");
    uint32_t n_dims = in.read<uint32_t>(what);
    AF_CHECK(n_dims <= kMaxDims, ErrorCode::kFormat, kComponent, origin, ": ", what, " has ",
             n_dims, " dimensions (at most ", kMaxDims, ")");
    int64_t ne[kMaxDims] = {1, 1, 1, 1};  // innermost first
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = in.read<int64_t>(what);
      AF_CHECK(ne[d] >= 0, ErrorCode::kFormat, kComponent, origin, ": ", what, " dimension ", d,
               " is negative (", ne[d], ")");
      AF_CHECK(checked_mul(numel, ne[d], &numel), ErrorCode::kFormat, kComponent, origin, ": ",
               what, ": the product of its dimensions overflows");
    }
    uint32_t type_id = in.read<uint32_t>(what);
    std::optional<DTypeInfo> type = dtype_info(type_id);
    AF_CHECK(type.has_value(), ErrorCode::kFormat, kComponent, origin, ": ", what,
             " has unknown or removed ggml type id ", type_id);
    t.dtype = static_cast<DType>(type_id);
    AF_CHECK(ne[0] % type->block_size == 0, ErrorCode::kFormat, kComponent, origin, ": ", what,
             " row of ", ne[0], " elements is not a multiple of the ", type->name, " block size ",
             type->block_size);
    int64_t nbytes = ne[0] / type->block_size;
    bool ok = checked_mul(nbytes, type->type_size, &nbytes);
    for (uint32_t d = 1; d < kMaxDims && ok; ++d) ok = checked_mul(nbytes, ne[d], &nbytes);
    AF_CHECK(ok, ErrorCode::kFormat, kComponent, origin, ": ", what, ": its byte size overflows");
    t.nbytes = static_cast<uint64_t>(nbytes);
    t.offset = in.read<uint64_t>(what);
    AF_CHECK(t.offset % file.alignment_ == 0, ErrorCode::kFormat, kComponent, origin, ": ", what,
             " offset ", t.offset, " is not a multiple of the alignment ", file.alignment_);
    int64_t dims[kMaxDims];
    for (uint32_t d = 0; d < n_dims; ++d) dims[d] = ne[n_dims - 1 - d];
    t.shape = Shape::from(dims, static_cast<int>(n_dims));
    AF_CHECK(file.index_.emplace(t.name, file.tensors_.size()).second, ErrorCode::kFormat,
             kComponent, origin, ": duplicate tensor name '", t.name, "'");
    file.tensors_.push_back(std::move(t));
  }

  file.data_offset_ = align_up(in.pos(), file.alignment_, origin);
  const uint64_t size = buffer->size();
  for (const GgufTensorInfo& t : file.tensors_) {
    uint64_t end = 0;
    bool ok = !__builtin_add_overflow(file.data_offset_, t.offset, &end) &&
              !__builtin_add_overflow(end, t.nbytes, &end) && end <= size;
    AF_CHECK(ok, ErrorCode::kFormat, kComponent, origin, ": tensor '", t.name, "' (offset ",
             t.offset, ", ", t.nbytes, " bytes after the data section at ", file.data_offset_,
             ") extends beyond the end of the file (", size, " bytes)");
  }

  // Overlapping tensors would alias each other's bytes; empty tensors cannot overlap anything.
  std::vector<const GgufTensorInfo*> order;
  for (const GgufTensorInfo& t : file.tensors_) {
    if (t.nbytes) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& a = *order[i - 1];
    const GgufTensorInfo& b = *order[i];
    AF_CHECK(a.offset + a.nbytes <= b.offset, ErrorCode::kFormat, kComponent, origin, ": tensors '",
             a.name, "' [", a.offset, ", ", a.offset + a.nbytes, ") and '", b.name, "' [", b.offset,
             ", ", b.offset + b.nbytes, ") overlap");
  }
  return file;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

bool GgufFile::has_tensor(const std::string& name) const { return index_.count(name) != 0; }

Tensor GgufFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  AF_CHECK(it != index_.end(), ErrorCode::kInvalidArgument, kComponent, origin_,
           ": no tensor named '", name, "'");
  const GgufTensorInfo& t = tensors_[it->second];
  const std::byte* data = buffer_->data() + data_offset_ + t.offset;
  // general.alignment may legally be 1 or 2; kernels read through typed pointers, so a tensor
  // that is not aligned for its element (or block) type gets an aligned copy.
  const uintptr_t align = std::gcd(static_cast<uintptr_t>(info(t.dtype).type_size), uintptr_t{8});
  if (reinterpret_cast<uintptr_t>(data) % align != 0) {
    Tensor copy = Tensor::zeros(t.dtype, t.shape);
    if (copy.nbytes()) std::memcpy(copy.mutable_data(), data, copy.nbytes());
    return copy;
  }
  return Tensor(t.dtype, t.shape, buffer_, data);
}

}  // namespace af::io
