#pragma once
// GGUF v2/v3 reader. Every count, length and offset read from the file is checked against the
// real file size before use, so a hostile file raises af::Error instead of allocating what it
// merely claims.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "af/core/buffer.hpp"
#include "af/core/tensor.hpp"

namespace af::io {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

struct GgufValue;

// A metadata array, stored compactly so that memory follows the size on disk: numbers and bools
// as their little-endian bytes, strings as one character buffer plus end offsets, nested arrays
// as GgufArrays. (One GgufValue per element cost 48 bytes per uint8.) Elements always have the
// array's type: the appenders check it.
class GgufArray {
 public:
  explicit GgufArray(GgufType type = GgufType::kUint8);  // element type (nested arrays allowed)

  GgufType type() const { return type_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Checked element accessors: throw kFormat naming `key` when the element type does not fit
  // and kOutOfRange when `i` is past the end.
  int64_t int_at(size_t i, const std::string& key) const;   // any integer element type
  double float_at(size_t i, const std::string& key) const;  // float or integer element types
  bool bool_at(size_t i, const std::string& key) const;
  std::string_view string_at(size_t i, const std::string& key) const;  // valid while *this lives
  const GgufArray& array_at(size_t i, const std::string& key) const;
  // Element `i` as a standalone value (a string or nested array is copied).
  GgufValue at(size_t i) const;
  // Fixed-size element types: the elements' little-endian bytes, `size() * width` of them.
  std::span<const std::byte> raw_bytes() const;

  // Appending; kInvalidArgument when the value does not have (or fit) the element type.
  void push_back(const GgufValue& v);
  // `count` fixed-size elements from their little-endian bytes; bools must be 0 or 1. `what`
  // names the array in errors.
  void append_raw(const std::byte* data, size_t count, const std::string& what);
  void append_string(std::string_view s, const std::string& what);  // must be valid UTF-8
  void append_array(GgufArray a);
  void reserve(size_t n);

 private:
  void check_index(size_t i, const std::string& key) const;

  GgufType type_;
  size_t size_ = 0;
  std::vector<std::byte> bytes_;   // fixed-size elements back to back, or string characters
  std::vector<uint64_t> ends_;     // strings: element i ends at ends_[i] in bytes_
  std::vector<GgufArray> arrays_;  // nested arrays
};

struct GgufValue {
  GgufType type = GgufType::kUint8;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> value;

  // Checked accessors: throw kFormat naming `key` when the type does not fit.
  int64_t as_int(const std::string& key) const;   // any integer type (uint64 must fit int64)
  double as_float(const std::string& key) const;  // float or integer types
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const GgufArray& as_array(const std::string& key) const;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype;
  Shape shape;          // row-major (reversed from GGUF's innermost-first ne[])
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  static GgufFile parse(std::shared_ptr<const Buffer> buffer, const std::string& origin);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  // The metadata keys in file order (writers that copy a file keep its order).
  const std::vector<std::string>& metadata_keys() const { return metadata_keys_; }
  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const;
  Tensor tensor(const std::string& name) const;  // zero-copy view; throws naming tensor + file
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::shared_ptr<const Buffer> buffer_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<std::string> metadata_keys_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace af::io
