// Image decoding: every format's RGB8 pixels equal PIL's + transformers' convert_to_rgb exactly
// (SHA-256 of the pixels, from tools/make_image_fixtures.py), and bad input gives af::Error.
#include <sys/resource.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/image.hpp"
#include "image_test_util.hpp"
#include "modalities/image_decode.hpp"

namespace af::modalities {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string text = test::read_text(path);
  return {text.begin(), text.end()};
}

TEST(ImageDecode, PixelsEqualPilForEveryFormat) {
  const auto cases =
      nlohmann::json::parse(test::read_text(test::image_fixtures_dir() + "/decoded.json"));
  ASSERT_GE(cases.size(), 17u);
  int checked = 0;
  for (const auto& c : cases) {
    const std::string where = c["where"], file = c["file"];
    if (where == "shared" && !test::shared_images_present()) continue;
    SCOPED_TRACE(file);
    const Image image = Image::load(test::image_path(where, file));
    EXPECT_EQ(image.width(), c["width"].get<int>());
    EXPECT_EQ(image.height(), c["height"].get<int>());
    int64_t sum = 0;
    for (uint8_t v : image.rgb()) sum += v;
    EXPECT_EQ(sum, c["sum"].get<int64_t>());
    EXPECT_EQ(image.hash(), c["sha256"].get<std::string>());
    ++checked;
  }
  if (!test::shared_images_present()) {
    GTEST_SKIP() << "shared images absent (AF_TESTDATA); checked " << checked << " inputs";
  }
}

TEST(ImageDecode, CompositeOnWhiteMatchesPilFormulaEndpoints) {
  // alpha 0 -> white, alpha 255 -> the value itself, for every value.
  for (int v = 0; v < 256; ++v) {
    EXPECT_EQ(detail::composite_on_white(uint8_t(v), 0), 255);
    EXPECT_EQ(detail::composite_on_white(uint8_t(v), 255), v);
  }
  EXPECT_EQ(detail::composite_on_white(0, 128), 127);  // PIL: alpha_composite gives 127
}

TEST(ImageDecode, HashKeysThePictureNotTheFile) {
  const Image png = Image::load(test::image_fixtures_dir() + "/inputs/pixel_1x1.png");
  const Image same(1, 1, {200, 30, 70});
  const Image other(1, 1, {200, 30, 71});
  EXPECT_EQ(png.hash(), same.hash());
  EXPECT_NE(png.hash(), other.hash());
  EXPECT_EQ(png.hash().size(), 64u);
}

// An error of `code` whose message names the origin.
void expect_image_error(const std::vector<uint8_t>& bytes, ErrorCode code,
                        const std::string& needle, const ImageLimits& limits = {}) {
  try {
    Image::decode(bytes, "bad.img", limits);
    ADD_FAILURE() << "decoded without error; expected " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find("[image] bad.img: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ImageBadInput, EmptyTextAndUnknown) {
  expect_image_error({}, ErrorCode::kFormat, "empty file");
  const std::string text = "hello, this is not an image\n";
  expect_image_error({text.begin(), text.end()}, ErrorCode::kFormat, "not an image");
  try {
    Image::load("/nonexistent/x.png");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
  }
}

TEST(ImageBadInput, TruncatedFilesOfEveryFormat) {
  for (const char* name : {"odd_641x479.jpg", "odd_641x479.png", "progressive.jpg",
                           "transparent.gif", "lossy.webp", "alpha.webp", "rgb.bmp", "rgb16.png"}) {
    SCOPED_TRACE(name);
    std::vector<uint8_t> bytes = read_bytes(test::image_fixtures_dir() + "/inputs/" + name);
    ASSERT_GT(bytes.size(), 42u) << "fixture missing or empty";
    for (size_t keep : {size_t(3), size_t(12), size_t(40), bytes.size() / 2, bytes.size() - 2}) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + keep);
      EXPECT_THROW(Image::decode(cut, "bad.img"), Error) << "kept " << keep << " bytes";
    }
  }
}

TEST(ImageBadInput, CorruptBytesNeverCrash) {
  const std::vector<uint8_t> good = read_bytes(test::image_fixtures_dir() + "/inputs/rgba.png");
  std::vector<uint8_t> bytes = good;
  for (size_t i = 30; i < bytes.size(); i += 7) bytes[i] ^= 0x5A;
  expect_image_error(bytes, ErrorCode::kFormat, "corrupt PNG");
  std::vector<uint8_t> jpeg = read_bytes(test::image_fixtures_dir() + "/inputs/progressive.jpg");
  for (size_t i = 2; i < 300 && i < jpeg.size(); i += 5) jpeg[i] = uint8_t(i);
  EXPECT_THROW(Image::decode(jpeg, "bad.img"), Error);
}

void put_be32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = uint8_t(x >> (24 - 8 * i));
}

// A PNG signature and IHDR of width x height (valid CRC), then an IDAT of junk.
std::vector<uint8_t> png_header(uint32_t width, uint32_t height) {
  std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0,
                            13,   'I', 'H', 'D', 'R',  0,    0,    0,    0, 0, 0,
                            0,    0,   8,   2,   0,    0,    0,    0,    0, 0, 0};
  put_be32(v, 16, width);
  put_be32(v, 20, height);
  uint32_t crc = 0xFFFFFFFFu;  // CRC-32 of "IHDR" + data, as PNG defines it
  for (size_t i = 12; i < 29; ++i) {
    crc ^= v[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  put_be32(v, 29, ~crc);
  const std::vector<uint8_t> idat = {0, 0, 0, 4, 'I', 'D', 'A', 'T', 1, 2, 3, 4, 0, 0, 0, 0};
  v.insert(v.end(), idat.begin(), idat.end());
  return v;
}

long max_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(ImageBadInput, HugeDimensionsRefusedFromTheHeader) {
  const long rss_before = max_rss_kb();
  expect_image_error(png_header(60000, 60000), ErrorCode::kOutOfRange,
                     "60000x60000 = 3600000000 pixels exceeds the limit of 100000000");
  // GIF: logical screen 65535 x 65535, one image descriptor of the same size.
  std::vector<uint8_t> gif = {'G',  'I',  'F', '8',  '9', 'a',  0xFF, 0xFF, 0xFF, 0xFF,
                              0,    0,    0,   0x2C, 0,   0,    0,    0,    0xFF, 0xFF,
                              0xFF, 0xFF, 0,   2,    2,   0x4C, 1,    0,    0x3B};
  expect_image_error(gif, ErrorCode::kOutOfRange, "65535x65535");
  // WebP lossless (VP8L) header of 16384 x 16384.
  std::vector<uint8_t> webp = {'R', 'I', 'F', 'F', 26,  0,  0, 0, 'W', 'E', 'B',
                               'P', 'V', 'P', '8', 'L', 14, 0, 0, 0,   0x2F};
  const uint32_t bits = (16383u) | (16383u << 14);  // width-1, height-1; no alpha, version 0
  for (int i = 0; i < 4; ++i) webp.push_back(uint8_t(bits >> (8 * i)));
  webp.resize(webp.size() + 9, 0);
  expect_image_error(webp, ErrorCode::kOutOfRange, "16384x16384");
  // JPEG: chelsea-sized file with its SOF rewritten to 60000 x 60000.
  std::vector<uint8_t> jpeg = read_bytes(test::image_fixtures_dir() + "/inputs/odd_641x479.jpg");
  for (size_t i = 2; i + 8 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && (jpeg[i + 1] == 0xC0 || jpeg[i + 1] == 0xC2)) {
      jpeg[i + 5] = 0xEA, jpeg[i + 6] = 0x60, jpeg[i + 7] = 0xEA, jpeg[i + 8] = 0x60;
      break;
    }
  }
  expect_image_error(jpeg, ErrorCode::kOutOfRange, "60000x60000");
  // A 60000^2 RGB buffer is 10.8 GB; nothing near it (or even 100 MB) may have been touched.
  EXPECT_LT(max_rss_kb() - rss_before, 100 * 1024);
}

TEST(ImageBadInput, PixelLimitIsConfigurable) {
  const std::vector<uint8_t> bytes = read_bytes(test::image_fixtures_dir() + "/inputs/rgba.png");
  ImageLimits limits;
  limits.max_pixels = 64 * 48 - 1;
  expect_image_error(bytes, ErrorCode::kOutOfRange, "exceeds the limit of 3071", limits);
  limits.max_pixels = 64 * 48;
  EXPECT_EQ(Image::decode(bytes, "ok.png", limits).width(), 64);
}

TEST(ImageBadInput, ZeroSizeHeaders) {
  expect_image_error(png_header(0, 10), ErrorCode::kFormat, "corrupt PNG");
  std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 0, 0, 0, 0, 0,    0, 0, 0x2C, 0,
                              0,   0,   0,   0,   0,   0,   0, 0, 2, 2, 0x4C, 1, 0, 0x3B};
  expect_image_error(gif, ErrorCode::kFormat, "invalid size");
}

}  // namespace
}  // namespace af::modalities
