#pragma once
// Memory that tensors view: owned (64-byte aligned heap) or a read-only file mapping.
#include <cstddef>
#include <memory>
#include <string>

namespace af {

class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual const std::byte* data() const = 0;
  virtual size_t size() const = 0;
};

class OwnedBuffer final : public Buffer {
 public:
  explicit OwnedBuffer(size_t size);  // zero-filled, 64-byte aligned
  ~OwnedBuffer() override;
  OwnedBuffer(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(const OwnedBuffer&) = delete;

  const std::byte* data() const override { return data_; }
  std::byte* mutable_data() { return data_; }
  size_t size() const override { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Read-only private mapping of a whole file. Throws af::Error(kIo) naming the path on failure.
class MappedFile final : public Buffer {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile() override;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const override { return data_; }
  size_t size() const override { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages lying wholly inside [begin, begin + n) (a range of this mapping),
  // e.g. once a weight has been copied into another layout; a later read faults them in again
  // from the file, so this only saves memory and never changes what is read.
  void release_pages(const std::byte* begin, size_t n) const;
  // Copies [begin, begin + n) (a range of this mapping) into dst by reading the file, without
  // touching the mapping: the page cache serves it and nothing becomes resident here. Lookups
  // into released ranges (an embedding table whose pages went into a repacked lm_head) use it,
  // since faulting a row back in maps its neighbours too. Throws af::Error(kIo) on a failed read.
  void read(const std::byte* begin, size_t n, void* dst) const;

 private:
  std::string path_;
  int fd_ = -1;  // kept open for read()
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace af
