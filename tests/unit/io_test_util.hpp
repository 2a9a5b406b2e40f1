#pragma once
// Helpers shared by the io tests: where the test data lives, in-memory buffers, byte writers and
// builders for small (valid or deliberately hostile) GGUF and SafeTensors files.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/core/buffer.hpp"

namespace af::io::test {

// $AF_TESTDATA, else <repo>/../shared/testdata with the repo root from $AF_SOURCE_DIR or, when
// unset, from this header's own path (CMake compiles with absolute paths).
inline std::filesystem::path testdata_dir() {
  if (const char* env = std::getenv("AF_TESTDATA")) return env;
  std::filesystem::path root;
  if (const char* env = std::getenv("AF_SOURCE_DIR")) {
    root = env;
  } else {
    root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  }
  return root / ".." / "shared" / "testdata";
}

inline std::shared_ptr<const Buffer> to_buffer(const std::vector<uint8_t>& bytes) {
  auto buf = std::make_shared<OwnedBuffer>(bytes.size());
  if (!bytes.empty()) std::memcpy(buf->mutable_data(), bytes.data(), bytes.size());
  return buf;
}

inline void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh folder under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("af_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Little-endian byte writer.
class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    data_.insert(data_.end(), raw, raw + sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& i64(int64_t v) { return put(v); }
  Bytes& f32(float v) { return put(v); }
  // GGUF string: uint64 length then the bytes.
  Bytes& str(const std::string& s) {
    u64(s.size());
    return raw(s);
  }
  Bytes& raw(const std::string& s) {
    data_.insert(data_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& v) {
    data_.insert(data_.end(), v.begin(), v.end());
    return *this;
  }
  Bytes& pad_to(size_t alignment) {
    while (data_.size() % alignment) data_.push_back(0);
    return *this;
  }
  const std::vector<uint8_t>& data() const { return data_; }
  size_t size() const { return data_.size(); }

 private:
  std::vector<uint8_t> data_;
};

// GGUF value type ids (gguf.hpp's GgufType, repeated so builders can write raw ids).
enum : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kStr = 8,
  kArr = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Builds a GGUF file in memory. Tensors get consecutive aligned offsets unless one is given;
// every tensor is filled with a recognisable byte pattern. Fields can be overridden to build
// hostile files.
class GgufBuilder {
 public:
  uint32_t version = 3;
  std::string magic = "GGUF";
  uint64_t alignment = 32;  // used for layout; written only through kv("general.alignment")
  std::optional<uint64_t> n_tensors_override;
  std::optional<uint64_t> n_kv_override;

  GgufBuilder& kv_u32(const std::string& key, uint32_t v) { return kv(key, kU32, Bytes().u32(v)); }
  GgufBuilder& kv_i32(const std::string& key, int32_t v) { return kv(key, kI32, Bytes().put(v)); }
  GgufBuilder& kv_u64(const std::string& key, uint64_t v) { return kv(key, kU64, Bytes().u64(v)); }
  GgufBuilder& kv_f32(const std::string& key, float v) { return kv(key, kF32, Bytes().f32(v)); }
  GgufBuilder& kv_bool(const std::string& key, bool v) { return kv(key, kBool, Bytes().u8(v)); }
  GgufBuilder& kv_str(const std::string& key, const std::string& v) {
    return kv(key, kStr, Bytes().str(v));
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    b.u32(kStr).u64(v.size());
    for (const std::string& s : v) b.str(s);
    return kv(key, kArr, b);
  }
  // A key followed by a raw type id and raw value bytes.
  GgufBuilder& kv(const std::string& key, uint32_t type, const Bytes& value) {
    kv_.str(key).u32(type).raw(value.data());
    ++n_kv_;
    return *this;
  }

  struct TensorSpec {
    std::string name;
    std::vector<int64_t> ne;  // innermost first
    uint32_t type = 0;        // ggml type id
    uint64_t nbytes = 0;      // bytes reserved in the data section
    std::optional<uint64_t> offset;
  };
  GgufBuilder& tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type,
                      uint64_t nbytes, std::optional<uint64_t> offset = std::nullopt) {
    tensors_.push_back({name, std::move(ne), type, nbytes, offset});
    return *this;
  }
  // An F32 tensor with the given dims (innermost first).
  GgufBuilder& f32_tensor(const std::string& name, std::vector<int64_t> ne) {
    uint64_t n = 4;
    for (int64_t d : ne) n *= static_cast<uint64_t>(d);
    return tensor(name, std::move(ne), 0, n);
  }

  std::vector<uint8_t> build() const {
    Bytes out;
    out.raw(magic).u32(version);
    out.u64(n_tensors_override.value_or(tensors_.size()));
    out.u64(n_kv_override.value_or(n_kv_));
    out.raw(kv_.data());
    uint64_t next = 0;
    std::vector<uint64_t> offsets;
    for (const TensorSpec& t : tensors_) {
      uint64_t off = t.offset.value_or(next);
      offsets.push_back(off);
      next = (off + t.nbytes + alignment - 1) / alignment * alignment;
      out.str(t.name).u32(static_cast<uint32_t>(t.ne.size()));
      for (int64_t d : t.ne) out.i64(d);
      out.u32(t.type).u64(off);
    }
    if (tensors_.empty()) return out.data();
    out.pad_to(alignment);
    std::vector<uint8_t> data;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      uint64_t end = offsets[i] + tensors_[i].nbytes;
      if (end > (uint64_t{1} << 20)) continue;  // hostile offsets: claimed, not written
      if (data.size() < end) data.resize(end, 0);
      for (uint64_t k = 0; k < tensors_[i].nbytes; ++k)
        data[offsets[i] + k] = static_cast<uint8_t>(i * 16 + k);
    }
    out.raw(data);
    return out.data();
  }

 private:
  Bytes kv_;
  uint64_t n_kv_ = 0;
  std::vector<TensorSpec> tensors_;
};

// A SafeTensors file from a header (serialised as given) and a data section.
inline std::vector<uint8_t> make_safetensors(const std::string& header,
                                             const std::vector<uint8_t>& data) {
  Bytes b;
  b.u64(header.size()).raw(header).raw(data);
  return b.data();
}

inline std::vector<uint8_t> make_safetensors(const nlohmann::json& header,
                                             const std::vector<uint8_t>& data) {
  return make_safetensors(header.dump(), data);
}

}  // namespace af::io::test
