// video_url content parts: parsed into ChatMessage::video_urls with their offsets, decoded from
// base64 data URLs into sampled videos, the size limit (413) checked before decoding, remote and
// file URLs, bad base64 and undecodable videos a 400 naming the part.
#include <gtest/gtest.h>

#include "api.hpp"
#include "test_util.hpp"
#include "unit/video_test_util.hpp"
#include "video_url.hpp"

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

int status_of(const std::string& url, const VideoUrlOptions& options = {}) {
  try {
    load_video_url(url, "messages[0].content", options);
  } catch (const ApiError& e) {
    EXPECT_NE(e.message.find("messages[0].content"), std::string::npos) << e.message;
    return e.status;
  }
  return 200;
}

TEST(ServerVideoUrl, ParsesVideoPartsInOrder) {
  const ApiRequest r = parse_request(
      Endpoint::kChatCompletions,
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"what happens?"},)"
      R"({"type":"video_url","video_url":{"url":"data:video/mp4;base64,AAAA"}}]}]})");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].video_urls, (std::vector<std::string>{"data:video/mp4;base64,AAAA"}));
  EXPECT_EQ(r.messages[0].video_offsets, (std::vector<size_t>{13}));
  EXPECT_THROW(parse_request(Endpoint::kChatCompletions,
                             R"({"messages":[{"role":"user","content":[{"type":"video_url"}]}]})"),
               ApiError);
  EXPECT_THROW(parse_request(Endpoint::kChatCompletions,
                             R"({"messages":[{"role":"user","content":[{"type":"video_url",)"
                             R"("video_url":{"url":3}}]}]})"),
               ApiError);
}

TEST(ServerVideoUrl, BadUrlsAre400AndOversizedAre413) {
  EXPECT_EQ(status_of("https://example.com/a.mp4"), 400);
  EXPECT_EQ(status_of("file:///etc/passwd"), 400);
  EXPECT_EQ(status_of("data:image/png;base64,AAAA"), 400);
  EXPECT_EQ(status_of("data:video/mp4,plain"), 400);
  EXPECT_EQ(status_of("data:video/mp4;base64,@@@@"), 400);
  EXPECT_EQ(status_of("data:video/mp4;base64,"), 400);
  EXPECT_EQ(status_of("data:video/mp4;base64," + base64(std::string(3000, 'x'))), 400);
  VideoUrlOptions small;
  small.max_bytes = 1000;
  EXPECT_EQ(status_of("data:video/mp4;base64," + base64(std::string(3000, 'x')), small), 413);
}

TEST(ServerVideoUrl, DecodesADataUrlIntoSampledFrames) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string url =
      "data:video/quicktime;base64," + base64(test::read_text(test::fixture_clip()));
  const modalities::Video v = load_video_url(url, "messages[0].content", {});
  EXPECT_EQ(v.frame_indices(), (std::vector<int64_t>{0, 4, 9, 13, 18, 22, 27, 31}));
  EXPECT_EQ(v.hash(), modalities::Video::load(test::fixture_clip()).hash());
  VideoUrlOptions absurd;
  absurd.sampling.fps = -3;
  EXPECT_EQ(status_of(url, absurd), 400);
}

}  // namespace
}  // namespace af::server
