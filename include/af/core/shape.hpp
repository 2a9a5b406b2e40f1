#pragma once
// A tensor shape in row-major order: dims[0] is the outermost (slowest) dimension, as in
// PyTorch/SafeTensors. (GGUF lists dims innermost first; the GGUF reader reverses them.)
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace af {

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  // Throws af::Error if rank > kMaxRank or a dim is negative.
  static Shape from(const int64_t* dims, int rank);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t dim(int i) const;  // negative i counts from the end; checked
  // Product of all dims; throws af::Error on int64 overflow.
  int64_t numel() const;
  std::string str() const;  // "[2, 3]"
  bool operator==(const Shape& other) const;

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

// a * b with overflow detection; returns false on overflow or negative operands.
bool checked_mul(int64_t a, int64_t b, int64_t* out);
bool checked_add(int64_t a, int64_t b, int64_t* out);

}  // namespace af
