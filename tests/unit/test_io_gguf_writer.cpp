#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "af/io/gguf_writer.hpp"
#include "unit/io_test_util.hpp"

namespace af::io {
namespace {

using test::TempDir;

std::vector<float> iota_floats(int64_t n, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = scale * static_cast<float>(i) - 1.5f;
  return v;
}

TEST(IoGgufWriter, AllValueTypesRoundTrip) {
  TempDir dir;
  GgufWriter w;
  w.set("u8", gguf_uint(GgufType::kUint8, 255));
  w.set("i8", gguf_int(GgufType::kInt8, -128));
  w.set("u16", gguf_uint(GgufType::kUint16, 65535));
  w.set("i16", gguf_int(GgufType::kInt16, -32768));
  w.set_u32("u32", 4000000000u);
  w.set_i32("i32", -2000000000);
  w.set_f32("f32", 0.25f);
  w.set_bool("bool", true);
  w.set_string("str", "h\xC3\xA9llo");
  w.set("u64", gguf_uint(GgufType::kUint64, 0xffffffffffffffffull));
  w.set("i64", gguf_int(GgufType::kInt64, -(int64_t{1} << 62)));
  w.set("f64", gguf_float(GgufType::kFloat64, 1e300));
  w.set("strs", gguf_string_array({"a", "", "ccc"}));
  w.set("f32s", gguf_f32_array({1.0f, -2.5f}));
  w.set("i32s", gguf_i32_array({7, -7, 0}));
  w.set("empty", gguf_array(GgufType::kUint8, {}));
  w.set("nested", gguf_array(GgufType::kArray, {gguf_i32_array({1, 2}), gguf_i32_array({3})}));
  w.set_u32("u32", 42);  // replacing keeps one entry
  const auto path = (dir.path() / "meta.gguf").string();
  w.write(path);

  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 17u);
  EXPECT_EQ(f.find("u8")->type, GgufType::kUint8);
  EXPECT_EQ(f.find("u8")->as_int("u8"), 255);
  EXPECT_EQ(f.find("i8")->as_int("i8"), -128);
  EXPECT_EQ(f.find("u16")->as_int("u16"), 65535);
  EXPECT_EQ(f.find("i16")->as_int("i16"), -32768);
  EXPECT_EQ(f.find("u32")->as_int("u32"), 42);
  EXPECT_EQ(f.find("u32")->type, GgufType::kUint32);
  EXPECT_EQ(f.find("i32")->as_int("i32"), -2000000000);
  EXPECT_EQ(f.find("f32")->type, GgufType::kFloat32);
  EXPECT_EQ(f.find("f32")->as_float("f32"), 0.25);
  EXPECT_TRUE(f.find("bool")->as_bool("bool"));
  EXPECT_EQ(f.find("str")->as_string("str"), "h\xC3\xA9llo");
  EXPECT_EQ(std::get<uint64_t>(f.find("u64")->value), 0xffffffffffffffffull);
  EXPECT_EQ(f.find("i64")->as_int("i64"), -(int64_t{1} << 62));
  EXPECT_EQ(f.find("f64")->type, GgufType::kFloat64);
  EXPECT_EQ(f.find("f64")->as_float("f64"), 1e300);
  const GgufArray& strs = f.find("strs")->as_array("strs");
  ASSERT_EQ(strs.size(), 3u);
  EXPECT_EQ(strs.string_at(0, ""), "a");
  EXPECT_EQ(strs.string_at(1, ""), "");
  EXPECT_EQ(strs.string_at(2, ""), "ccc");
  const GgufArray& f32s = f.find("f32s")->as_array("f32s");
  EXPECT_EQ(f32s.type(), GgufType::kFloat32);
  EXPECT_EQ(f32s.float_at(1, ""), -2.5);
  EXPECT_EQ(f.find("i32s")->as_array("").int_at(1, ""), -7);
  EXPECT_TRUE(f.find("empty")->as_array("").empty());
  const GgufArray& nested = f.find("nested")->as_array("nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested.array_at(0, "").int_at(1, ""), 2);
  EXPECT_EQ(nested.array_at(1, "").int_at(0, ""), 3);
}

TEST(IoGgufWriter, TensorsRoundTripWithAlignment) {
  for (uint32_t alignment : {1u, 32u, 64u, 4096u}) {
    TempDir dir;
    GgufWriter w;
    if (alignment != 32) w.set_alignment(alignment);
    w.set_string("general.architecture", "test");
    const std::vector<float> a = iota_floats(3 * 5, 0.5f);
    const std::vector<float> b = iota_floats(7, 2.0f);
    w.add_tensor("a", Tensor::from_f32({3, 5}, a.data()));
    w.add_tensor("b.bias", Tensor::from_f32({7}, b.data()));
    // A block type: 2 rows of 64 q8_0 elements (2 blocks of 34 bytes each per row).
    w.add_tensor("q", DType::Q8_0, Shape{2, 64}, [](std::span<std::byte> dst) {
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = static_cast<std::byte>(i * 7);
    });
    w.add_tensor("f16", DType::F16, Shape{2, 3, 4}, [](std::span<std::byte> dst) {
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = static_cast<std::byte>(255 - i);
    });
    const auto path = (dir.path() / "t.gguf").string();
    w.write(path);

    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.alignment(), alignment);
    ASSERT_EQ(f.tensors().size(), 4u);
    for (const GgufTensorInfo& t : f.tensors()) EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    Tensor ta = f.tensor("a");
    EXPECT_EQ(ta.shape(), (Shape{3, 5}));
    EXPECT_EQ(std::memcmp(ta.data(), a.data(), a.size() * 4), 0);
    Tensor tb = f.tensor("b.bias");
    EXPECT_EQ(tb.shape(), (Shape{7}));
    EXPECT_EQ(std::memcmp(tb.data(), b.data(), b.size() * 4), 0);
    Tensor tq = f.tensor("q");
    EXPECT_EQ(tq.dtype(), DType::Q8_0);
    EXPECT_EQ(tq.shape(), (Shape{2, 64}));
    ASSERT_EQ(tq.nbytes(), 2u * 2 * 34);
    for (size_t i = 0; i < tq.nbytes(); ++i) ASSERT_EQ(tq.data()[i], static_cast<std::byte>(i * 7));
    Tensor th = f.tensor("f16");
    EXPECT_EQ(th.shape(), (Shape{2, 3, 4}));
    EXPECT_EQ(th.data()[5], static_cast<std::byte>(250));
    // The file ends with the last tensor, padded data section included.
    EXPECT_GT(std::filesystem::file_size(path), 2u * 2 * 34 + 15 * 4 + 7 * 4 + 24 * 2);
  }
}

TEST(IoGgufWriter, CopiesEveryTensorAndKeyOfARealFile) {
  const auto src = test::testdata_dir() / "models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(src)) GTEST_SKIP() << "no test data at " << src;
  GgufFile in = GgufFile::open(src.string());
  GgufWriter w;
  for (const std::string& key : in.metadata_keys()) w.set(key, *in.find(key));
  for (const GgufTensorInfo& t : in.tensors()) w.add_tensor(t.name, in.tensor(t.name));
  TempDir dir;
  const auto path = (dir.path() / "copy.gguf").string();
  w.write(path);
  GgufFile out = GgufFile::open(path);
  ASSERT_EQ(out.metadata().size(), in.metadata().size());
  const GgufArray& a = in.find("tokenizer.ggml.tokens")->as_array("");
  const GgufArray& b = out.find("tokenizer.ggml.tokens")->as_array("");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a.string_at(i, ""), b.string_at(i, ""));
  ASSERT_EQ(out.tensors().size(), in.tensors().size());
  for (const GgufTensorInfo& t : in.tensors()) {
    Tensor x = in.tensor(t.name), y = out.tensor(t.name);
    ASSERT_EQ(x.shape(), y.shape()) << t.name;
    ASSERT_EQ(x.nbytes(), y.nbytes());
    ASSERT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0) << t.name;
  }
  // Same layout as llama.cpp's writer: the copy is byte-identical to the file it wrote.
  std::ifstream fa(src, std::ios::binary), fb(path, std::ios::binary);
  const std::string bytes_a((std::istreambuf_iterator<char>(fa)), std::istreambuf_iterator<char>());
  const std::string bytes_b((std::istreambuf_iterator<char>(fb)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(bytes_a == bytes_b);
}

TEST(IoGgufWriter, BadValuesThrow) {
  EXPECT_THROW(gguf_uint(GgufType::kUint8, 256), Error);
  EXPECT_THROW(gguf_uint(GgufType::kUint16, 70000), Error);
  EXPECT_THROW(gguf_uint(GgufType::kInt32, 1), Error);
  EXPECT_THROW(gguf_int(GgufType::kInt8, 128), Error);
  EXPECT_THROW(gguf_int(GgufType::kInt16, -32769), Error);
  EXPECT_THROW(gguf_int(GgufType::kInt32, int64_t{1} << 31), Error);
  EXPECT_THROW(gguf_int(GgufType::kUint32, 1), Error);
  EXPECT_THROW(gguf_float(GgufType::kInt32, 1.0), Error);
  // Elements must have the array's type.
  EXPECT_THROW(gguf_array(GgufType::kInt32, {gguf_string("x")}), Error);
  // A hand-built value whose variant does not match its type.
  GgufWriter w;
  EXPECT_THROW(w.set("k", GgufValue{GgufType::kString, uint64_t{3}}), Error);
  EXPECT_THROW(w.set("k", GgufValue{GgufType::kArray, uint64_t{3}}), Error);
  EXPECT_THROW(w.set("k", GgufValue{static_cast<GgufType>(99), uint64_t{3}}), Error);
  EXPECT_THROW(w.set("k", gguf_string("\xFF\xFE")), Error);
  EXPECT_THROW(w.set("", gguf_bool(true)), Error);
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.set_string("general.alignment", "32"), Error);
  // Arrays nested past the reader's limit.
  GgufValue v = gguf_i32_array({1});
  for (int i = 0; i < 9; ++i) {
    auto a = std::make_shared<GgufArray>(GgufType::kArray);
    a->push_back(v);
    v = GgufValue{GgufType::kArray, a};
  }
  EXPECT_THROW(w.set("deep", v), Error);
  EXPECT_EQ(w.has("deep"), false);
}

TEST(IoGgufWriter, BadTensorsThrow) {
  GgufWriter w;
  const float x[4] = {1, 2, 3, 4};
  w.add_tensor("t", Tensor::from_f32({4}, x));
  EXPECT_THROW(w.add_tensor("t", Tensor::from_f32({4}, x)), Error);  // duplicate
  EXPECT_THROW(w.add_tensor("", Tensor::from_f32({4}, x)), Error);
  EXPECT_THROW(w.add_tensor("u", Tensor()), Error);
  auto noop = [](std::span<std::byte>) {};
  EXPECT_THROW(w.add_tensor("q", DType::Q4_0, Shape{2, 48}, noop), Error);         // not 32-aligned
  EXPECT_THROW(w.add_tensor("r", DType::F32, Shape{1, 1, 1, 1, 1}, noop), Error);  // rank 5
  EXPECT_THROW(w.add_tensor("s", DType::F32, Shape{}, noop), Error);
  EXPECT_THROW(w.add_tensor("n", DType::F32, Shape{4}, GgufWriter::Fill{}), Error);
  EXPECT_EQ(w.tensor_count(), 1u);
}

TEST(IoGgufWriter, FailedWriteLeavesNoFile) {
  TempDir dir;
  GgufWriter w;
  w.add_tensor("t", DType::F32, Shape{4},
               [](std::span<std::byte>) { fail(ErrorCode::kFormat, "test", "source broke"); });
  const auto path = dir.path() / "broken.gguf";
  EXPECT_THROW(w.write(path.string()), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
  EXPECT_THROW(w.write((dir.path() / "no/such/dir/x.gguf").string()), Error);
}

}  // namespace
}  // namespace af::io
