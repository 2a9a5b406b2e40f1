// input_audio content parts: parsed into ChatMessage::audios with their offsets, formats other
// than wav/mp3 refused at parse, base64 decoded with a size limit (413) checked before decoding,
// bad base64 and undecodable audio a 400 naming the part.
#include <cmath>

#include <gtest/gtest.h>

#include "api.hpp"
#include "input_audio.hpp"
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

std::string fox_wav() {
  return test::read_text(test::testdata_dir() + "/audio/speech_fox_16k.wav");
}

// A mono 16 kHz IEEE-float WAV file holding `samples`.
std::string float_wav(const std::vector<float>& samples) {
  const auto data_bytes = static_cast<uint32_t>(samples.size() * 4);
  std::string out;
  auto u32 = [&out](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&out](uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); };
  out += "RIFF";
  u32(36 + data_bytes);
  out += "WAVEfmt ";
  u32(16);
  u16(3);  // IEEE float
  u16(1);
  u32(16000);
  u32(16000 * 4);
  u16(4);
  u16(32);
  out += "data";
  u32(data_bytes);
  out.append(reinterpret_cast<const char*>(samples.data()), data_bytes);
  return out;
}

ApiError parse_error(const std::string& body) {
  try {
    parse_request(Endpoint::kChatCompletions, body);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted " << body;
  return ApiError(0, "");
}

ApiError load_error(const std::string& data, const std::string& format,
                    const InputAudioOptions& options = {}) {
  try {
    load_input_audio(data, format, "messages[0].content", options);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "loaded " << data.substr(0, 40);
  return ApiError(0, "");
}

TEST(ServerInputAudio, PartsParseWithTheirOffsets) {
  const std::string body = R"({"messages": [{"role": "user", "content": [
      {"type": "text", "text": "Hear "},
      {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}},
      {"type": "text", "text": "this."}]}]})";
  const ApiRequest r = parse_request(Endpoint::kChatCompletions, body);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].content, "Hear this.");
  ASSERT_EQ(r.messages[0].audios.size(), 1u);
  EXPECT_EQ(r.messages[0].audios[0].data, "AAAA");
  EXPECT_EQ(r.messages[0].audios[0].format, "mp3");
  EXPECT_EQ(r.messages[0].audio_offsets, std::vector<size_t>{5});
}

TEST(ServerInputAudio, BadPartsAre400NamingTheField) {
  const ApiError format = parse_error(
      R"({"messages": [{"role": "user", "content": [{"type": "input_audio",
          "input_audio": {"data": "AAAA", "format": "flac"}}]}]})");
  EXPECT_EQ(format.status, 400);
  EXPECT_EQ(format.param, "messages[0].content[0].input_audio.format");
  const ApiError missing = parse_error(
      R"({"messages": [{"role": "user", "content": [{"type": "input_audio",
          "input_audio": {"format": "wav"}}]}]})");
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(missing.code, "missing_required_parameter");
  const ApiError not_object = parse_error(
      R"({"messages": [{"role": "user", "content": [{"type": "input_audio",
          "input_audio": "AAAA"}]}]})");
  EXPECT_EQ(not_object.status, 400);
}

TEST(ServerInputAudio, DecodesWavLikeTheFile) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  const modalities::Audio audio =
      load_input_audio(base64(fox_wav()), "wav", "messages[0].content", {});
  const modalities::Audio file =
      modalities::Audio::load(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  EXPECT_EQ(audio.hash(), file.hash());
}

TEST(ServerInputAudio, BadDataIs400AndOversizeIs413) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  EXPECT_EQ(load_error("!!!!", "wav").code, "invalid_audio");
  EXPECT_EQ(load_error("", "wav").code, "invalid_audio");
  EXPECT_EQ(load_error(base64("hello, not audio"), "wav").code, "invalid_audio");
  EXPECT_EQ(load_error(base64("RIFF" + std::string(40, '\0')), "wav").code, "invalid_audio");
  EXPECT_EQ(load_error(base64(fox_wav()), "ogg").status, 400);
  InputAudioOptions small;
  small.max_bytes = 1000;
  const ApiError big = load_error(base64(fox_wav()), "wav", small);
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.code, "audio_too_large");
}

TEST(ServerInputAudio, NoSamplesAndNanAre400SilenceDecodes) {
  EXPECT_EQ(load_error(base64(float_wav({})), "wav").code, "invalid_audio");
  std::vector<float> nan(1600, 0.25f);
  nan[800] = NAN;
  const ApiError e = load_error(base64(float_wav(nan)), "wav");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "invalid_audio");
  const modalities::Audio silence = load_input_audio(
      base64(float_wav(std::vector<float>(16000, 0.0f))), "wav", "messages[0].content", {});
  EXPECT_EQ(silence.samples().size(), 16000u);
}

}  // namespace
}  // namespace af::server
