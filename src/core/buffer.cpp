#include "af/core/buffer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "af/core/error.hpp"

namespace af {

OwnedBuffer::OwnedBuffer(size_t size) : size_(size) {
  size_t rounded = (size + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail(ErrorCode::kIo, "buffer", "cannot allocate ", size, " bytes");
  std::memset(p, 0, rounded);
  data_ = static_cast<std::byte*>(p);
}

OwnedBuffer::~OwnedBuffer() { std::free(data_); }

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::kIo, "mmap", "cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(ErrorCode::kIo, "mmap", "cannot stat ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kIo, "mmap", path, " is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(ErrorCode::kIo, "mmap", "cannot map ", path, ": ", std::strerror(err));
    }
    data_ = static_cast<const std::byte*>(p);
  }
  fd_ = fd;
}

void MappedFile::release_pages(const std::byte* begin, size_t n) const {
  if (!data_ || begin < data_ || n > size_ || begin - data_ > static_cast<ptrdiff_t>(size_ - n)) {
    return;
  }
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto lo = reinterpret_cast<uintptr_t>(begin);
  const uintptr_t first = (lo + page - 1) / page * page;
  const uintptr_t last = (lo + n) / page * page;
  // Advice only: a refusal leaves the pages resident, which is still correct.
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void MappedFile::read(const std::byte* begin, size_t n, void* dst) const {
  AF_CHECK(
      data_ && begin >= data_ && n <= size_ && begin - data_ <= static_cast<ptrdiff_t>(size_ - n),
      ErrorCode::kInvalidArgument, "mmap", "read of ", n, " bytes outside the mapping of ", path_);
  auto offset = static_cast<off_t>(begin - data_);
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, out, n, offset);
    if (got < 0 && errno == EINTR) continue;
    AF_CHECK(got > 0, ErrorCode::kIo, "mmap", "cannot read ", n, " bytes at offset ", offset,
             " of ", path_, ": ", got < 0 ? std::strerror(errno) : "unexpected end of file");
    out += got;
    offset += got;
    n -= static_cast<size_t>(got);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace af
