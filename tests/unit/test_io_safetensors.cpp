#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <limits>

#include "af/core/error.hpp"
#include "af/io/safetensors.hpp"
#include "test_util.hpp"
#include "unit/io_test_util.hpp"

namespace af::io {
namespace {

using json = nlohmann::json;
using test::make_safetensors;
using test::to_buffer;

// Expects parse() to throw af::Error with `code` and a message containing every `parts`.
void expect_error(const std::vector<uint8_t>& bytes, ErrorCode code,
                  std::initializer_list<const char*> parts) {
  try {
    SafeTensorsFile::parse(to_buffer(bytes), "mem.safetensors");
    ADD_FAILURE() << "parse succeeded, expected an error mentioning " << *parts.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.component(), "safetensors");
    std::string msg = e.what();
    EXPECT_NE(msg.find("mem.safetensors"), std::string::npos) << msg;
    for (const char* p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' in " << msg;
  }
}

// Two F32 tensors, a [2, 3] and a [4], back to back, plus metadata.
json small_header() {
  return json{{"__metadata__", {{"format", "pt"}}},
              {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
              {"b", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {24, 40}}}}};
}

std::vector<uint8_t> small_data() {
  std::vector<uint8_t> data(40);
  for (int i = 0; i < 10; ++i) {
    float f = static_cast<float>(i) + 0.5f;
    std::memcpy(&data[static_cast<size_t>(i) * 4], &f, 4);
  }
  return data;
}

TEST(IoSafeTensors, HeadersWithManyEntriesParseFast) {
  // Before: the JSON parser's cost grew with the square of the entries (40,000 junk metadata
  // entries: 12 s). Now both headers below take milliseconds.
  json meta = json::object();
  for (int i = 0; i < 40'000; ++i) meta[std::string("junk").append(std::to_string(i))] = "x";
  json many_meta = small_header();
  many_meta["__metadata__"] = meta;
  json many_tensors = small_header();
  for (int i = 0; i < 40'000; ++i)
    many_tensors[std::string("e").append(std::to_string(i))] = {
        {"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
  for (const json& header : {many_meta, many_tensors}) {
    const std::vector<uint8_t> bytes = make_safetensors(header, small_data());
    const auto t0 = std::chrono::steady_clock::now();
    SafeTensorsFile f = SafeTensorsFile::parse(to_buffer(bytes), "mem");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 3.0 * af::test::time_scale()) << bytes.size() << " header bytes";
    EXPECT_EQ(f.metadata().size(), header["__metadata__"].size());
    EXPECT_TRUE(f.has("b"));
  }
}

TEST(IoSafeTensors, ParsesSmallFile) {
  SafeTensorsFile f =
      SafeTensorsFile::parse(to_buffer(make_safetensors(small_header(), small_data())), "mem");
  ASSERT_EQ(f.entries().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  Tensor a = f.tensor("a");
  EXPECT_EQ(a.dtype(), DType::F32);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_FLOAT_EQ(a.as<float>()[5], 5.5f);
  Tensor b = f.tensor("b");
  EXPECT_EQ(b.shape(), (Shape{4}));
  EXPECT_FLOAT_EQ(b.as<float>()[0], 6.5f);
  EXPECT_FALSE(f.has("c"));
  EXPECT_THROW(f.tensor("c"), Error);
}

TEST(IoSafeTensors, RealStoriesFile) {
  auto path = test::testdata_dir() / "models/stories260K-hf/model.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no test data at " << path;
  SafeTensorsFile f = SafeTensorsFile::open(path.string());
  EXPECT_EQ(f.entries().size(), 47u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  Tensor emb = f.tensor("model.embed_tokens.weight");
  EXPECT_EQ(emb.dtype(), DType::F32);
  EXPECT_EQ(emb.shape(), (Shape{512, 64}));
  EXPECT_EQ(f.tensor("model.layers.0.mlp.gate_proj.weight").shape(), (Shape{172, 64}));
  EXPECT_EQ(f.tensor("model.layers.4.self_attn.k_proj.weight").shape(), (Shape{32, 64}));
  // Zero-copy: the tensor views the mapped file.
  EXPECT_TRUE(std::dynamic_pointer_cast<const MappedFile>(emb.buffer()) != nullptr);
  for (const SafeTensorsEntry& e : f.entries()) EXPECT_EQ(e.dtype, DType::F32) << e.name;
}

TEST(IoSafeTensors, EveryTruncationThrows) {
  std::vector<uint8_t> full = make_safetensors(small_header(), small_data());
  for (size_t len = 0; len < full.size(); ++len) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(SafeTensorsFile::parse(to_buffer(cut), "cut"), Error) << "prefix " << len;
  }
}

TEST(IoSafeTensors, HeaderLengthBeyondFile) {
  test::Bytes b;
  b.u64(uint64_t{1} << 62).raw("{}");
  expect_error(b.data(), ErrorCode::kFormat, {"header length"});
  test::Bytes c;
  c.u64(3).raw("{}");
  expect_error(c.data(), ErrorCode::kFormat, {"header length 3"});
  expect_error({1, 2, 3}, ErrorCode::kFormat, {"too small"});
}

TEST(IoSafeTensors, InvalidJson) {
  expect_error(make_safetensors(std::string("{\"a\": "), {}), ErrorCode::kFormat, {"invalid JSON"});
  expect_error(make_safetensors(std::string("[1, 2]"), {}), ErrorCode::kFormat,
               {"not a JSON object"});
  // Invalid UTF-8 inside a JSON string.
  expect_error(make_safetensors(std::string("{\"\xff\": 1}"), {}), ErrorCode::kFormat,
               {"invalid JSON"});
  // Deep nesting is bounded instead of recursing.
  expect_error(make_safetensors(std::string(10000, '[') + std::string(10000, ']'), {}),
               ErrorCode::kFormat, {"nesting"});
}

TEST(IoSafeTensors, DuplicateTensorName) {
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error(make_safetensors(header, std::vector<uint8_t>(8)), ErrorCode::kFormat,
               {"duplicate", "\"a\""});
}

TEST(IoSafeTensors, OffsetsOutOfRange) {
  json h = small_header();
  h["b"]["data_offsets"] = {24, 44};
  h["b"]["shape"] = {5};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "data section"});
  h = small_header();
  h["b"]["data_offsets"] = {30, 24};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "end before"});
  h = small_header();
  h["b"]["data_offsets"] = {-8, 8};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "non-negative"});
  h = small_header();
  h["b"]["data_offsets"] = {24};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "data_offsets"});
}

TEST(IoSafeTensors, SizeMismatch) {
  json h = small_header();
  h["b"]["shape"] = {3};  // 12 bytes, but the offsets span 16
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "needs 12"});
}

TEST(IoSafeTensors, OverlappingTensors) {
  json h = small_header();
  h["b"]["data_offsets"] = {20, 36};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'a'", "'b'", "overlap"});
}

TEST(IoSafeTensors, ShapeProductOverflow) {
  json h = small_header();
  h["b"]["shape"] = {uint64_t{1} << 32, uint64_t{1} << 32};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "overflows"});
  h["b"]["shape"] = {uint64_t{1} << 61};  // numel fits, bytes (x4) do not
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "overflows"});
  h["b"]["shape"] = {std::numeric_limits<uint64_t>::max()};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "non-negative"});
}

TEST(IoSafeTensors, BadShapeEntries) {
  json h = small_header();
  h["b"]["shape"] = {-4};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "shape"});
  h["b"]["shape"] = {4.5};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "shape"});
  h["b"]["shape"] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "rank 9"});
  h["b"].erase("shape");
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "shape"});
}

TEST(IoSafeTensors, UnknownDtype) {
  json h = small_header();
  h["b"]["dtype"] = "F12";
  expect_error(make_safetensors(h, small_data()), ErrorCode::kUnsupported, {"'b'", "F12"});
  h["b"]["dtype"] = 7;
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'b'", "dtype"});
}

TEST(IoSafeTensors, UnsupportedDtypeFailsOnAccessOnly) {
  json h = small_header();
  h["b"]["dtype"] = "U8";
  h["b"]["shape"] = {16};
  SafeTensorsFile f = SafeTensorsFile::parse(to_buffer(make_safetensors(h, small_data())), "mem");
  EXPECT_EQ(f.entries().size(), 1u);
  EXPECT_TRUE(f.has("b"));
  EXPECT_NO_THROW(f.tensor("a"));
  try {
    f.tensor("b");
    ADD_FAILURE() << "expected kUnsupported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("U8"), std::string::npos);
  }
  // Unsupported tensors are still checked for overlaps.
  h["b"]["data_offsets"] = {20, 36};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"overlap"});
}

TEST(IoSafeTensors, AllMappedDtypes) {
  const std::pair<const char*, DType> types[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I8", DType::I8},   {"I16", DType::I16}, {"I32", DType::I32},   {"I64", DType::I64}};
  for (const auto& [name, dtype] : types) {
    int64_t size = info(dtype).type_size;
    json h = {{"t", {{"dtype", name}, {"shape", {2}}, {"data_offsets", {0, 2 * size}}}}};
    SafeTensorsFile f = SafeTensorsFile::parse(
        to_buffer(make_safetensors(h, std::vector<uint8_t>(static_cast<size_t>(2 * size)))), "m");
    EXPECT_EQ(f.tensor("t").dtype(), dtype) << name;
  }
}

TEST(IoSafeTensors, BadMetadata) {
  json h = small_header();
  h["__metadata__"] = {{"format", 3}};
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"__metadata__", "format"});
  h["__metadata__"] = "x";
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"__metadata__"});
  h = small_header();
  h["a"] = 5;
  expect_error(make_safetensors(h, small_data()), ErrorCode::kFormat, {"'a'"});
}

TEST(IoSafeTensors, MisalignedDataIsCopied) {
  // A header of odd length puts the data section at an odd offset.
  json h = {{"t", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  std::string header = h.dump() + " ";
  if ((8 + header.size()) % 4 == 0) header += " ";
  std::vector<uint8_t> data(8);
  float v[2] = {1.25f, -3.0f};
  std::memcpy(data.data(), v, 8);
  SafeTensorsFile f = SafeTensorsFile::parse(to_buffer(make_safetensors(header, data)), "m");
  Tensor t = f.tensor("t");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 4, 0u);
  EXPECT_FLOAT_EQ(t.as<float>()[0], 1.25f);
  EXPECT_FLOAT_EQ(t.as<float>()[1], -3.0f);
}

TEST(IoSafeTensors, EmptyTensorsAndGaps) {
  json h = {{"e", {{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {4, 4}}}},
            {"t", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}}}};
  SafeTensorsFile f =
      SafeTensorsFile::parse(to_buffer(make_safetensors(h, std::vector<uint8_t>(12))), "m");
  EXPECT_EQ(f.tensor("e").numel(), 0);
  EXPECT_EQ(f.tensor("t").numel(), 1);
}

TEST(IoSafeTensors, MissingFile) {
  EXPECT_THROW(SafeTensorsFile::open("/nonexistent/x.safetensors"), Error);
}

}  // namespace
}  // namespace af::io
