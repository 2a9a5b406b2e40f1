// image_url content parts: parsed into ChatMessage::image_urls, decoded from base64 data URLs,
// remote URLs refused, file:// only inside the allowed folder, bad images a 400 naming the part.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "api.hpp"
#include "image_url.hpp"
#include "test_util.hpp"

namespace af::server {
namespace {

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 |
                       uint8_t(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += table[(v >> k) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string camera_png() { return test::read_text(test::testdata_dir() + "/images/camera.png"); }

int status_of(const std::string& url, const ImageUrlOptions& options = {}) {
  try {
    load_image_url(url, "messages[0].content", options);
  } catch (const ApiError& e) {
    EXPECT_NE(e.message.find("messages[0].content"), std::string::npos) << e.message;
    return e.status;
  }
  return 200;
}

TEST(ServerImageUrl, ParsesImagePartsInOrder) {
  const ApiRequest r = parse_request(
      Endpoint::kChatCompletions,
      R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:a"}},)"
      R"({"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:b"}}]}]})");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].content, "hi");
  EXPECT_EQ(r.messages[0].image_urls, (std::vector<std::string>{"data:a", "data:b"}));
  EXPECT_THROW(parse_request(Endpoint::kChatCompletions,
                             R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"),
               ApiError);
  EXPECT_THROW(
      parse_request(Endpoint::kChatCompletions,
                    R"({"messages":[{"role":"user","content":[{"type":"input_audio"}]}]})"),
      ApiError);
}

TEST(ServerImageUrl, DataUrlDecodesToThePixelsOfTheFile) {
  const std::string png = camera_png();
  const modalities::Image want =
      modalities::Image::load(test::testdata_dir() + "/images/camera.png");
  const modalities::Image got =
      load_image_url("data:image/png;base64," + base64(png), "messages[0].content", {});
  EXPECT_EQ(got.hash(), want.hash());
}

TEST(ServerImageUrl, BadUrlsAndImagesAre400) {
  const std::string png = camera_png();
  EXPECT_EQ(status_of("https://example.com/cat.png"), 400);
  EXPECT_EQ(status_of("http://127.0.0.1/cat.png"), 400);
  EXPECT_EQ(status_of("data:image/png," + png.substr(0, 10)), 400);  // not base64
  EXPECT_EQ(status_of("data:text/plain;base64,aGVsbG8="), 400);      // not an image type
  EXPECT_EQ(status_of("data:image/png;base64,aGVsbG8="), 400);       // not an image
  EXPECT_EQ(status_of("data:image/png;base64," + base64(png.substr(0, 200))), 400);  // truncated
  EXPECT_EQ(status_of("data:image/png;base64,"), 400);                               // empty
  EXPECT_EQ(status_of("data:image/png;base64,@@@@"), 400);
  ImageUrlOptions small;
  small.limits.max_pixels = 100;  // camera.png is 512x512
  EXPECT_EQ(status_of("data:image/png;base64," + base64(png), small), 400);
}

TEST(ServerImageUrl, FileUrlsOnlyInsideTheAllowedFolder) {
  const std::string file = test::testdata_dir() + "/images/camera.png";
  EXPECT_EQ(status_of("file://" + file), 400);  // no folder allowed
  ImageUrlOptions options;
  options.local_folder = test::testdata_dir() + "/images";
  EXPECT_EQ(status_of("file://" + file, options), 200);
  EXPECT_EQ(status_of("file://" + options.local_folder + "/../models/stories260K-hf/config.json",
                      options),
            400);
}

}  // namespace
}  // namespace af::server
