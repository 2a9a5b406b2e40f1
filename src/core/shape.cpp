#include "af/core/shape.hpp"

#include "af/core/error.hpp"

namespace af {

bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_mul_overflow(a, b, out);
}

bool checked_add(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_add_overflow(a, b, out);
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  *this = from(dims.begin(), static_cast<int>(dims.size()));
}

Shape Shape::from(const int64_t* dims, int rank) {
  AF_CHECK(rank >= 0 && rank <= kMaxRank, ErrorCode::kInvalidArgument, "shape", "rank ", rank,
           " exceeds the maximum of ", kMaxRank);
  Shape s;
  s.rank_ = rank;
  for (int i = 0; i < rank; ++i) {
    AF_CHECK(dims[i] >= 0, ErrorCode::kInvalidArgument, "shape", "negative dimension ", dims[i]);
    s.dims_[static_cast<size_t>(i)] = dims[i];
  }
  return s;
}

int64_t Shape::dim(int i) const {
  int j = i < 0 ? rank_ + i : i;
  AF_CHECK(j >= 0 && j < rank_, ErrorCode::kInvalidArgument, "shape", "dimension index ", i,
           " out of range for ", str());
  return dims_[static_cast<size_t>(j)];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) {
    AF_CHECK(checked_mul(n, dims_[static_cast<size_t>(i)], &n), ErrorCode::kInvalidArgument,
             "shape", "element count of ", str(), " overflows int64");
  }
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[static_cast<size_t>(i)] != other.dims_[static_cast<size_t>(i)]) return false;
  }
  return true;
}

}  // namespace af
