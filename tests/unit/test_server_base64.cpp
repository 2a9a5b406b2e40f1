// The one base64 decoder of the server's media parts (image_url, video_url, input_audio):
// RFC 4648's test vectors, the URL-safe alphabet, optional padding, the size known from the
// text's length, and malformed input refused with the reason.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base64.hpp"

namespace af::server {
namespace {

std::string decoded(const std::string& text) {
  std::vector<uint8_t> out;
  std::string error;
  EXPECT_TRUE(base64_decode(text, out, error)) << text << ": " << error;
  EXPECT_EQ(base64_decoded_size(text), out.size()) << text;
  return std::string(out.begin(), out.end());
}

TEST(ServerBase64, Rfc4648VectorsWithAndWithoutPadding) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"Zg==", "f"},
                                                         {"Zm8=", "fo"},
                                                         {"Zm9v", "foo"},
                                                         {"Zm9vYg==", "foob"},
                                                         {"Zm9vYmE=", "fooba"},
                                                         {"Zm9vYmFy", "foobar"}};
  for (const auto& [text, plain] : vectors) {
    EXPECT_EQ(decoded(text), plain);
    std::string unpadded(text);
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    EXPECT_EQ(decoded(unpadded), plain);
  }
}

TEST(ServerBase64, StandardAndUrlSafeAlphabetsAgree) {
  // 0xfb 0xff 0xbf encodes to "+/+/" in the standard alphabet and "-_-_" in the URL-safe one.
  EXPECT_EQ(decoded("+/+/"), std::string("\xfb\xff\xbf"));
  EXPECT_EQ(decoded("-_-_"), std::string("\xfb\xff\xbf"));
}

TEST(ServerBase64, MalformedInputIsRefusedWithTheReason) {
  std::vector<uint8_t> out;
  std::string error;
  EXPECT_FALSE(base64_decode("Zm9vY", out, error));  // one character left over
  EXPECT_EQ(error, "truncated");
  EXPECT_FALSE(base64_decode("Zm9v!mFy", out, error));
  EXPECT_EQ(error, "character 4");
  EXPECT_FALSE(base64_decode("Zm9v Ym", out, error));  // whitespace is not allowed
  EXPECT_EQ(error, "character 4");
  EXPECT_EQ(base64_decoded_size(std::string(4000, 'A')), 3000u);  // size without decoding
}

}  // namespace
}  // namespace af::server
