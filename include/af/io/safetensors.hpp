#pragma once
// SafeTensors: 8-byte little-endian header length, a JSON header, then the tensor bytes.
// Parsing validates everything against the real buffer size before any tensor is exposed.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "af/core/buffer.hpp"
#include "af/core/tensor.hpp"

namespace af::io {

struct SafeTensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

class SafeTensorsFile {
 public:
  // Maps and parses `path`; errors name the path.
  static SafeTensorsFile open(const std::string& path);
  // Parses an in-memory buffer; `origin` names it in errors. Used by open() and the fuzzer.
  static SafeTensorsFile parse(std::shared_ptr<const Buffer> buffer, const std::string& origin);

  const std::vector<SafeTensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  // A zero-copy view; throws kInvalidArgument naming the tensor and file if absent, and
  // kUnsupported naming the dtype for tensors stored in a type af::DType lacks (U8, BOOL, F8...).
  // A tensor whose bytes are not aligned to its element size is copied instead.
  Tensor tensor(const std::string& name) const;
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::shared_ptr<const Buffer> buffer_;
  const std::byte* data_section_ = nullptr;
  std::vector<SafeTensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  // Tensors whose (valid) safetensors dtype has no af::DType: name -> dtype. They are checked
  // like the others but only fail when someone asks for them, so the rest of the file loads.
  std::map<std::string, std::string> unsupported_;
};

}  // namespace af::io
