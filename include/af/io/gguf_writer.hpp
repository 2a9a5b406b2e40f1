#pragma once
// GGUF v3 writer: metadata of every GGUF value type (arrays included, nested too), tensors of any
// ggml storage type placed at multiples of general.alignment. Tensor bytes are produced one
// tensor at a time while writing, so a converter never holds the whole output in memory.
// The result reads back with af::io::GgufFile and with llama.cpp / pip's gguf.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "af/core/shape.hpp"
#include "af/core/tensor.hpp"
#include "af/io/gguf.hpp"

namespace af::io {

// Value constructors; they check that the value fits the type (kInvalidArgument otherwise).
GgufValue gguf_uint(GgufType type, uint64_t v);  // kUint8/16/32/64
GgufValue gguf_int(GgufType type, int64_t v);    // kInt8/16/32/64
GgufValue gguf_float(GgufType type, double v);   // kFloat32/64
GgufValue gguf_bool(bool v);
GgufValue gguf_string(std::string v);
// An array of `element_type` values (each must have that type; kArray elements nest).
GgufValue gguf_array(GgufType element_type, std::vector<GgufValue> values);
GgufValue gguf_string_array(const std::vector<std::string>& values);
GgufValue gguf_f32_array(const std::vector<float>& values);
GgufValue gguf_i32_array(const std::vector<int32_t>& values);

class GgufWriter {
 public:
  // Writes dst (exactly the tensor's byte size) with the tensor's bytes.
  using Fill = std::function<void(std::span<std::byte> dst)>;

  // Sets a metadata key, replacing an earlier value of the same key in place (keys keep the
  // order of their first set). Throws kInvalidArgument for an empty key or a malformed value.
  void set(const std::string& key, GgufValue value);
  void set_u32(const std::string& key, uint32_t v) { set(key, gguf_uint(GgufType::kUint32, v)); }
  void set_i32(const std::string& key, int32_t v) { set(key, gguf_int(GgufType::kInt32, v)); }
  void set_f32(const std::string& key, float v) { set(key, gguf_float(GgufType::kFloat32, v)); }
  void set_bool(const std::string& key, bool v) { set(key, gguf_bool(v)); }
  void set_string(const std::string& key, std::string v) { set(key, gguf_string(std::move(v))); }
  bool has(const std::string& key) const { return index_.count(key) != 0; }
  void erase(const std::string& key);
  // general.alignment (uint32, a power of two; default 32 when the key is absent).
  void set_alignment(uint32_t alignment);

  // Declares a tensor (shape row-major, as GgufFile reports it; at most 4 dims; the innermost
  // dimension a multiple of the type's block size). `fill` runs during write().
  void add_tensor(const std::string& name, DType dtype, const Shape& shape, Fill fill);
  // A tensor whose bytes are copied from `tensor` (kept alive by the writer until write()).
  void add_tensor(const std::string& name, const Tensor& tensor);
  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file (through a temporary beside it, renamed at the end, so a failure leaves no
  // half-written file at `path`). Throws kIo naming the path when the OS refuses.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t nbytes = 0;
    Fill fill;
  };
  uint64_t alignment() const;

  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t> index_;  // key -> position in metadata_
  std::vector<PendingTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace af::io
