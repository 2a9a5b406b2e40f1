// GgufArray: compact storage (memory about the size on disk) and typed element access.
#include <malloc.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "unit/io_test_util.hpp"

namespace af::io {
namespace {

using test::Bytes;
using test::GgufBuilder;
using test::to_buffer;

GgufFile parse(const std::vector<uint8_t>& bytes) {
  return GgufFile::parse(to_buffer(bytes), "mem.gguf");
}

// Bytes the allocator has handed out (small chunks plus mmapped large ones).
size_t allocated_bytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

TEST(IoGguf, LargeArraysCostAboutTheirSizeOnDisk) {
  // Before: one 48-byte GgufValue per element, so a 30 MB uint8 array took 1.4 GB.
  constexpr size_t kN = 30u << 20;
  std::vector<uint8_t> blob(kN);
  for (size_t i = 0; i < kN; ++i) blob[i] = static_cast<uint8_t>(i * 31);
  GgufBuilder b;
  b.kv("blob", test::kArr, Bytes().u32(test::kU8).u64(kN).raw(blob));
  blob = {};
  // A million one-byte strings: 9 bytes each on disk.
  constexpr size_t kStrings = 1u << 20;
  Bytes strs;
  strs.u32(test::kStr).u64(kStrings);
  for (size_t i = 0; i < kStrings; ++i) strs.str(std::string(1, static_cast<char>('a' + i % 26)));
  b.kv("strs", test::kArr, strs);
  std::shared_ptr<const Buffer> bytes = to_buffer(b.build());

  const size_t before = allocated_bytes();
  GgufFile f = GgufFile::parse(bytes, "mem.gguf");
  const size_t used = allocated_bytes() - before;
  // 30 MB of uint8 plus 9 MB of strings (characters and 8-byte end offsets), with room for
  // vector growth of the string characters.
  EXPECT_LT(used, kN + 9 * kStrings + (8u << 20)) << used << " bytes";

  const GgufArray& a = f.find("blob")->as_array("blob");
  ASSERT_EQ(a.size(), kN);
  EXPECT_EQ(a.raw_bytes().size(), kN);
  for (size_t i : {size_t{0}, size_t{1}, kN / 3, kN - 1})
    EXPECT_EQ(a.int_at(i, "blob"), static_cast<uint8_t>(i * 31)) << i;
  EXPECT_THROW(a.int_at(kN, "blob"), Error);
  EXPECT_THROW(a.string_at(0, "blob"), Error);
  const GgufArray& s = f.find("strs")->as_array("strs");
  ASSERT_EQ(s.size(), kStrings);
  EXPECT_EQ(s.string_at(0, "strs"), "a");
  EXPECT_EQ(s.string_at(kStrings - 1, "strs"), std::string(1, 'a' + (kStrings - 1) % 26));
  EXPECT_EQ(s.at(27).as_string("strs"), "b");
}

TEST(IoGguf, FixedSizeArraysOfEveryType) {
  GgufBuilder b;
  b.kv("i16", test::kArr, Bytes().u32(test::kI16).u64(2).put<int16_t>(-300).put<int16_t>(7))
      .kv("u32", test::kArr, Bytes().u32(test::kU32).u64(1).u32(4000000000u))
      .kv("f32", test::kArr, Bytes().u32(test::kF32).u64(2).f32(0.5f).f32(-2.0f))
      .kv("f64", test::kArr, Bytes().u32(test::kF64).u64(1).put<double>(1e300))
      .kv("i64", test::kArr, Bytes().u32(test::kI64).u64(1).i64(-(int64_t{1} << 40)))
      .kv("u64", test::kArr, Bytes().u32(test::kU64).u64(1).u64(~uint64_t{0}))
      .kv("flags", test::kArr, Bytes().u32(test::kBool).u64(2).u8(0).u8(1));
  GgufFile f = parse(b.build());
  EXPECT_EQ(f.find("i16")->as_array("").int_at(0, ""), -300);
  EXPECT_EQ(f.find("i16")->as_array("").int_at(1, ""), 7);
  EXPECT_EQ(f.find("u32")->as_array("").int_at(0, ""), 4000000000);
  EXPECT_EQ(f.find("f32")->as_array("").float_at(1, ""), -2.0);
  EXPECT_EQ(f.find("f32")->as_array("").at(0).type, GgufType::kFloat32);
  EXPECT_EQ(f.find("f64")->as_array("").float_at(0, ""), 1e300);
  EXPECT_EQ(f.find("i64")->as_array("").int_at(0, ""), -(int64_t{1} << 40));
  EXPECT_THROW(f.find("u64")->as_array("").int_at(0, "u64"), Error);  // does not fit int64
  EXPECT_EQ(std::get<uint64_t>(f.find("u64")->as_array("").at(0).value), ~uint64_t{0});
  EXPECT_FALSE(f.find("flags")->as_array("").bool_at(0, ""));
  EXPECT_TRUE(f.find("flags")->as_array("").bool_at(1, ""));
  EXPECT_THROW(f.find("flags")->as_array("").int_at(0, "flags"), Error);

  GgufBuilder bad;
  bad.kv("flags", test::kArr, Bytes().u32(test::kBool).u64(3).u8(0).u8(1).u8(2));
  try {
    parse(bad.build());
    ADD_FAILURE() << "a bool array holding 2 parsed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    const std::string msg = e.what();
    for (const char* part : {"mem.gguf", "'flags'", "bool value 2", "index 2"})
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' in " << msg;
  }
}

}  // namespace
}  // namespace af::io
