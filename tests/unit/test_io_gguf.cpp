#include <gtest/gtest.h>

#include <cstring>

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

// Expects parse() to throw af::Error with `code` and a message containing every `parts`.
void expect_error(const std::vector<uint8_t>& bytes, ErrorCode code,
                  std::initializer_list<const char*> parts) {
  try {
    parse(bytes);
    ADD_FAILURE() << "parse succeeded, expected an error mentioning " << *parts.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.component(), "gguf");
    std::string msg = e.what();
    EXPECT_NE(msg.find("mem.gguf"), std::string::npos) << msg;
    for (const char* p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' in " << msg;
  }
}

// A small valid file: a few metadata types and two F32 tensors.
GgufBuilder small_builder() {
  GgufBuilder b;
  b.kv_str("general.architecture", "llama")
      .kv_u32("llama.block_count", 2)
      .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .kv_str_array("tokenizer.ggml.tokens", {"<unk>", "a", "\xc3\xa9"})
      .f32_tensor("token_embd.weight", {4, 3})  // ne innermost first: [3, 4] row-major
      .f32_tensor("output_norm.weight", {4});
  return b;
}

TEST(IoGguf, ParsesSmallFile) {
  GgufFile f = parse(small_builder().build());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.find("general.architecture")->as_string("k"), "llama");
  EXPECT_EQ(f.find("llama.block_count")->as_int("k"), 2);
  EXPECT_FLOAT_EQ(
      static_cast<float>(f.find("llama.attention.layer_norm_rms_epsilon")->as_float("k")), 1e-5f);
  const GgufArray& tokens = f.find("tokenizer.ggml.tokens")->as_array("k");
  EXPECT_EQ(tokens.type(), GgufType::kString);
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens.string_at(2, "k"), "\xc3\xa9");
  EXPECT_EQ(f.find("missing"), nullptr);

  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].shape, (Shape{3, 4}));
  EXPECT_EQ(f.tensors()[0].nbytes, 48u);
  Tensor t = f.tensor("token_embd.weight");
  EXPECT_EQ(t.shape(), (Shape{3, 4}));
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 32, 0u);
  EXPECT_EQ(static_cast<uint8_t>(t.data()[5]), 5);  // builder pattern: tensor 0 byte k = k
  Tensor n = f.tensor("output_norm.weight");
  EXPECT_EQ(static_cast<uint8_t>(n.data()[0]), 16);  // tensor 1 byte k = 16 + k
  EXPECT_TRUE(f.has_tensor("output_norm.weight"));
  EXPECT_FALSE(f.has_tensor("nope"));
  EXPECT_THROW(f.tensor("nope"), Error);
}

TEST(IoGguf, AllValueTypesAndNestedArrays) {
  GgufBuilder b;
  b.kv("u8", test::kU8, Bytes().u8(200))
      .kv("i8", test::kI8, Bytes().put<int8_t>(-5))
      .kv("u16", test::kU16, Bytes().put<uint16_t>(60000))
      .kv("i16", test::kI16, Bytes().put<int16_t>(-300))
      .kv_u32("u32", 4000000000u)
      .kv_i32("i32", -7)
      .kv_f32("f32", 0.5f)
      .kv_bool("bool", true)
      .kv_str("str", "hello")
      .kv_u64("u64", uint64_t{1} << 40)
      .kv("i64", test::kI64, Bytes().put<int64_t>(-(int64_t{1} << 40)))
      .kv("f64", test::kF64, Bytes().put<double>(2.25))
      .kv("big", test::kU64, Bytes().u64(~uint64_t{0}))
      // [[1, 2], [3]] as an array of uint8 arrays.
      .kv("nested", test::kArr,
          Bytes()
              .u32(test::kArr)
              .u64(2)
              .u32(test::kU8)
              .u64(2)
              .u8(1)
              .u8(2)
              .u32(test::kU8)
              .u64(1)
              .u8(3));
  GgufFile f = parse(b.build());
  EXPECT_EQ(f.find("u8")->as_int("u8"), 200);
  EXPECT_EQ(f.find("i8")->as_int("i8"), -5);
  EXPECT_EQ(f.find("u16")->as_int("u16"), 60000);
  EXPECT_EQ(f.find("i16")->as_int("i16"), -300);
  EXPECT_EQ(f.find("u32")->as_int("u32"), 4000000000);
  EXPECT_EQ(f.find("i32")->as_int("i32"), -7);
  EXPECT_EQ(f.find("f32")->as_float("f32"), 0.5);
  EXPECT_TRUE(f.find("bool")->as_bool("bool"));
  EXPECT_EQ(f.find("str")->as_string("str"), "hello");
  EXPECT_EQ(f.find("u64")->as_int("u64"), int64_t{1} << 40);
  EXPECT_EQ(f.find("i64")->as_int("i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.find("f64")->as_float("f64"), 2.25);
  EXPECT_EQ(f.find("i32")->as_float("i32"), -7.0);
  EXPECT_EQ(f.find("bool")->type, GgufType::kBool);
  const GgufArray& nested = f.find("nested")->as_array("nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested.type(), GgufType::kArray);
  EXPECT_EQ(nested.array_at(0, "n").int_at(1, "n"), 2);
  EXPECT_EQ(nested.array_at(1, "n").int_at(0, "n"), 3);

  // Checked accessors name the key.
  try {
    f.find("str")->as_int("str");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'str'"), std::string::npos);
  }
  EXPECT_THROW(f.find("big")->as_int("big"), Error);  // does not fit int64
  EXPECT_THROW(f.find("u8")->as_string("u8"), Error);
  EXPECT_THROW(f.find("str")->as_array("str"), Error);
  EXPECT_THROW(f.find("u8")->as_bool("u8"), Error);
  EXPECT_THROW(f.find("str")->as_float("str"), Error);
}

TEST(IoGguf, Version2) {
  GgufBuilder b = small_builder();
  b.version = 2;
  EXPECT_EQ(parse(b.build()).version(), 2u);
}

TEST(IoGguf, RealStoriesFile) {
  auto path = test::testdata_dir() / "models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no test data at " << path;
  GgufFile f = GgufFile::open(path.string());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.tensors().size(), 48u);
  for (const GgufTensorInfo& t : f.tensors()) EXPECT_EQ(t.dtype, DType::F32) << t.name;
  EXPECT_EQ(f.find("general.architecture")->as_string("a"), "llama");
  EXPECT_EQ(f.find("llama.block_count")->as_int("b"), 5);
  EXPECT_EQ(f.find("llama.embedding_length")->as_int("e"), 64);
  EXPECT_EQ(f.find("llama.feed_forward_length")->as_int("f"), 172);
  EXPECT_EQ(f.find("llama.attention.head_count")->as_int("h"), 8);
  EXPECT_EQ(f.find("llama.attention.head_count_kv")->as_int("h"), 4);
  EXPECT_EQ(f.find("llama.context_length")->as_int("c"), 128);
  EXPECT_EQ(f.find("tokenizer.ggml.bos_token_id")->as_int("b"), 1);
  const GgufArray& tokens = f.find("tokenizer.ggml.tokens")->as_array("t");
  EXPECT_EQ(tokens.size(), 512u);
  EXPECT_EQ(f.find("tokenizer.ggml.scores")->as_array("s").size(), 512u);
  Tensor emb = f.tensor("token_embd.weight");
  EXPECT_EQ(emb.shape(), (Shape{512, 64}));
  const auto file = std::dynamic_pointer_cast<const MappedFile>(emb.buffer());
  ASSERT_TRUE(file != nullptr);
  // Reading through the file gives the mapping's bytes, released pages or not.
  std::vector<std::byte> row(64 * 4);
  file->read(emb.data() + 7 * row.size(), row.size(), row.data());
  EXPECT_EQ(0, std::memcmp(row.data(), emb.data() + 7 * row.size(), row.size()));
  file->release_pages(emb.data(), emb.nbytes());
  file->read(emb.data() + 7 * row.size(), row.size(), row.data());
  EXPECT_EQ(0, std::memcmp(row.data(), emb.data() + 7 * row.size(), row.size()));
  EXPECT_THROW(file->read(file->data() + file->size() - 3, 4, row.data()), af::Error);
  EXPECT_THROW(file->read(file->data() - 1, 1, row.data()), af::Error);
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").shape(), (Shape{64, 172}));
  EXPECT_EQ(f.tensor("blk.4.attn_k.weight").shape(), (Shape{32, 64}));
}

TEST(IoGguf, RealVocabOnlyFiles) {
  for (const char* name : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                           "ggml-vocab-phi-3.gguf", "ggml-vocab-bert-bge.gguf"}) {
    auto path = test::testdata_dir() / "tokenizer" / name;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no test data at " << path;
    GgufFile f = GgufFile::open(path.string());
    EXPECT_TRUE(f.tensors().empty()) << name;
    EXPECT_GT(f.find("tokenizer.ggml.tokens")->as_array("t").size(), 1000u) << name;
  }
}

TEST(IoGguf, EveryTruncationThrows) {
  std::vector<uint8_t> full = small_builder().build();
  for (size_t len = 0; len < full.size(); ++len) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(parse(cut), Error) << "prefix " << len;
  }
  EXPECT_NO_THROW(parse(full));
}

TEST(IoGguf, WrongMagicAndVersion) {
  GgufBuilder b = small_builder();
  b.magic = "GGUG";
  expect_error(b.build(), ErrorCode::kFormat, {"magic"});
  b = small_builder();
  b.version = 1;
  expect_error(b.build(), ErrorCode::kUnsupported, {"version 1"});
  b.version = 4;
  expect_error(b.build(), ErrorCode::kUnsupported, {"version 4"});
  b.version = 0;
  expect_error(b.build(), ErrorCode::kFormat, {"version 0"});
  b.version = 0x03000000;
  expect_error(b.build(), ErrorCode::kUnsupported, {"big-endian"});
}

TEST(IoGguf, HugeCounts) {
  GgufBuilder b;
  b.n_kv_override = uint64_t{1} << 62;
  expect_error(b.build(), ErrorCode::kFormat, {"metadata pairs"});
  b = GgufBuilder();
  b.n_tensors_override = uint64_t{1} << 62;
  expect_error(b.build(), ErrorCode::kFormat, {"tensors"});
  // An array of 2^60 uint8 claims more bytes than the file has.
  b = GgufBuilder();
  b.kv("tokenizer.ggml.token_type", test::kArr, Bytes().u32(test::kU8).u64(uint64_t{1} << 60));
  expect_error(b.build(), ErrorCode::kFormat, {"'tokenizer.ggml.token_type'", "claims"});
  // 2^62 strings: the per-element minimum (8 bytes) times the count cannot fit.
  b = GgufBuilder();
  b.kv("tokenizer.ggml.tokens", test::kArr,
       Bytes().u32(test::kStr).u64(uint64_t{1} << 62).u64(1).raw("a"));
  expect_error(b.build(), ErrorCode::kFormat, {"'tokenizer.ggml.tokens'", "claims"});
  // Just one element too many for the bytes present.
  b = GgufBuilder();
  b.kv("x", test::kArr, Bytes().u32(test::kU32).u64(3).u32(1).u32(2));
  expect_error(b.build(), ErrorCode::kFormat, {"'x'"});
  // A nested array whose inner count is huge.
  b = GgufBuilder();
  b.kv("n", test::kArr, Bytes().u32(test::kArr).u64(1).u32(test::kU64).u64(uint64_t{1} << 62));
  expect_error(b.build(), ErrorCode::kFormat, {"'n'", "claims"});
}

TEST(IoGguf, HugeStringLengths) {
  GgufBuilder b;
  b.kv("general.name", test::kStr, Bytes().u64(uint64_t{1} << 62).raw("abc"));
  expect_error(b.build(), ErrorCode::kFormat, {"'general.name'", "truncated"});
  // The key itself claims 2^62 bytes.
  Bytes raw;
  raw.raw("GGUF").u32(3).u64(0).u64(1).u64(uint64_t{1} << 62).raw("key-and-some-more-bytes");
  expect_error(raw.data(), ErrorCode::kFormat, {"metadata key #0", "truncated"});
  // A tensor name claiming ~2^64 bytes.
  b = GgufBuilder();
  b.tensor(std::string(), {4}, 0, 16);
  std::vector<uint8_t> bytes = b.build();
  // Replace the empty name's length field (right after the 24-byte header) with 2^64 - 1.
  std::memset(&bytes[24], 0xff, 8);
  expect_error(bytes, ErrorCode::kFormat, {"tensor #0", "truncated"});
}

TEST(IoGguf, ArrayNestingIsBounded) {
  Bytes value;
  const int depth = 20;
  for (int i = 0; i < depth; ++i) value.u32(test::kArr).u64(1);
  value.u32(test::kU8).u64(0);
  GgufBuilder b;
  b.kv("deep", test::kArr, value);
  expect_error(b.build(), ErrorCode::kFormat, {"'deep'", "nests"});
}

TEST(IoGguf, InvalidUtf8) {
  GgufBuilder b;
  b.kv_str("general.name", "ab\xff");
  expect_error(b.build(), ErrorCode::kFormat, {"'general.name'", "UTF-8"});
  b = GgufBuilder();
  b.kv_str("bad\xc0\xafkey", "x");  // overlong '/'
  expect_error(b.build(), ErrorCode::kFormat, {"metadata key #0", "UTF-8"});
  b = GgufBuilder();
  b.kv_str_array("tokenizer.ggml.tokens", {"ok", "\xed\xa0\x80"});  // surrogate
  expect_error(b.build(), ErrorCode::kFormat, {"'tokenizer.ggml.tokens'", "UTF-8"});
  b = GgufBuilder();
  b.f32_tensor("w\xe2\x82", {4});  // truncated sequence
  expect_error(b.build(), ErrorCode::kFormat, {"tensor #0", "UTF-8"});
}

TEST(IoGguf, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    GgufBuilder b = small_builder();
    b.kv_u32("general.alignment", a);
    expect_error(b.build(), ErrorCode::kFormat, {"general.alignment", "power of two"});
  }
  GgufBuilder b = small_builder();
  b.kv_str("general.alignment", "32");
  expect_error(b.build(), ErrorCode::kFormat, {"general.alignment"});
}

TEST(IoGguf, CustomAlignmentAndMisalignedCopy) {
  GgufBuilder b;
  b.alignment = 64;
  b.kv_u32("general.alignment", 64).f32_tensor("a", {3}).f32_tensor("b", {5});
  GgufFile f = parse(b.build());
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor("b").data()) % 64, 0u);

  // Alignment 1 is legal; a tensor at an odd offset is copied so typed reads stay aligned.
  b = GgufBuilder();
  b.alignment = 1;
  b.kv_u32("general.alignment", 1).tensor("odd", {1}, 24 /* i8 */, 1).f32_tensor("f", {2});
  std::vector<uint8_t> bytes = b.build();
  f = parse(bytes);
  EXPECT_EQ(f.tensors()[1].offset, 1u);
  Tensor t = f.tensor("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 4, 0u);
  EXPECT_EQ(static_cast<uint8_t>(t.data()[0]), 16);
  EXPECT_EQ(static_cast<uint8_t>(t.data()[7]), 23);
}

TEST(IoGguf, UnknownTensorType) {
  for (uint32_t id : {4u, 31u, 1000u}) {  // 4 was Q4_2 (removed), 31 never assigned
    GgufBuilder b;
    b.tensor("blk.0.attn_q.weight", {32}, id, 32);
    expect_error(b.build(), ErrorCode::kFormat,
                 {"'blk.0.attn_q.weight'", std::to_string(id).c_str()});
  }
}

TEST(IoGguf, BadDims) {
  GgufBuilder b;
  b.tensor("t", {1, 1, 1, 1, 1}, 0, 4);
  expect_error(b.build(), ErrorCode::kFormat, {"'t'", "5 dimensions"});
  b = GgufBuilder();
  b.tensor("t", {-4}, 0, 16);
  expect_error(b.build(), ErrorCode::kFormat, {"'t'", "negative"});
  b = GgufBuilder();
  b.tensor("t", {int64_t{1} << 32, int64_t{1} << 32}, 0, 16);
  expect_error(b.build(), ErrorCode::kFormat, {"'t'", "product of its dimensions overflows"});
  b = GgufBuilder();
  b.tensor("t", {int64_t{1} << 62}, 0, 16);  // elements fit, bytes do not
  expect_error(b.build(), ErrorCode::kFormat, {"'t'", "byte size overflows"});
  b = GgufBuilder();
  b.tensor("q", {33, 2}, 2 /* q4_0, block 32 */, 36);
  expect_error(b.build(), ErrorCode::kFormat, {"'q'", "block size 32"});
}

TEST(IoGguf, QuantizedTensorSize) {
  GgufBuilder b;
  b.tensor("q", {64, 3}, 8 /* q8_0: 34 bytes per 32 */, 3 * 2 * 34);
  GgufFile f = parse(b.build());
  EXPECT_EQ(f.tensors()[0].nbytes, 204u);
  EXPECT_EQ(f.tensor("q").shape(), (Shape{3, 64}));
  EXPECT_EQ(f.tensor("q").nbytes(), 204u);
}

TEST(IoGguf, OffsetsOutOfRange) {
  GgufBuilder b;
  b.f32_tensor("a", {4}).tensor("b", {4}, 0, 16, uint64_t{1} << 40);
  expect_error(b.build(), ErrorCode::kFormat, {"'b'", "beyond the end"});
  b = GgufBuilder();
  b.f32_tensor("a", {4}).tensor("b", {4}, 0, 16, 40);
  expect_error(b.build(), ErrorCode::kFormat, {"'b'", "alignment"});
  // Offset near 2^64: offset + data start overflows.
  GgufBuilder plain;
  plain.tensor("a", {4}, 0, 16);
  std::vector<uint8_t> bytes = plain.build();
  // Patch the offset field (the last 8 bytes of the single tensor info) to 2^64 - 32.
  size_t info_end = 24 + 8 + 1 + 4 + 8 + 4 + 8;
  uint64_t off = ~uint64_t{0} - 31;
  std::memcpy(&bytes[info_end - 8], &off, 8);
  expect_error(bytes, ErrorCode::kFormat, {"'a'", "beyond the end"});
}

TEST(IoGguf, OverlappingTensors) {
  GgufBuilder b;
  b.f32_tensor("a", {16}).tensor("b", {4}, 0, 16, 32);  // a covers [0, 64)
  expect_error(b.build(), ErrorCode::kFormat, {"'a'", "'b'", "overlap"});
  b = GgufBuilder();
  b.f32_tensor("a", {4}).tensor("b", {4}, 0, 16, 0);
  expect_error(b.build(), ErrorCode::kFormat, {"overlap"});
}

TEST(IoGguf, Duplicates) {
  GgufBuilder b;
  b.kv_u32("llama.block_count", 1).kv_u32("llama.block_count", 2);
  expect_error(b.build(), ErrorCode::kFormat, {"duplicate", "'llama.block_count'"});
  b = GgufBuilder();
  b.f32_tensor("w", {4}).f32_tensor("w", {4});
  expect_error(b.build(), ErrorCode::kFormat, {"duplicate", "'w'"});
}

TEST(IoGguf, BadValueTypes) {
  GgufBuilder b;
  b.kv("k", 13, Bytes().u8(0));
  expect_error(b.build(), ErrorCode::kFormat, {"'k'", "type 13"});
  b = GgufBuilder();
  b.kv("arr", test::kArr, Bytes().u32(99).u64(0));
  expect_error(b.build(), ErrorCode::kFormat, {"'arr'", "type 99"});
  b = GgufBuilder();
  b.kv("flag", test::kBool, Bytes().u8(2));
  expect_error(b.build(), ErrorCode::kFormat, {"'flag'", "bool"});
  b = GgufBuilder();
  b.kv_str("", "x");
  expect_error(b.build(), ErrorCode::kFormat, {"empty"});
}

TEST(IoGguf, EmptyAndZeroSizedTensors) {
  GgufBuilder b;
  b.tensor("empty", {0, 4}, 0, 0).f32_tensor("x", {2});
  GgufFile f = parse(b.build());
  EXPECT_EQ(f.tensor("empty").numel(), 0);
  EXPECT_EQ(f.tensor("x").numel(), 2);
}

TEST(IoGguf, MissingFile) { EXPECT_THROW(GgufFile::open("/nonexistent/x.gguf"), Error); }

}  // namespace
}  // namespace af::io
