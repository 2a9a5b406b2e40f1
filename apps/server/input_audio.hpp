#pragma once
// The audio of chat content parts ({"type": "input_audio", "input_audio": {"data": BASE64,
// "format": "wav" | "mp3"}}), as OpenAI defines them: base64 bytes decoded through libsndfile
// (af::modalities::Audio), resampled to 16 kHz. Errors are ApiError 400 naming the part (bad
// base64, unknown format, undecodable or empty audio) and 413 past max_bytes.
#include <cstdint>
#include <string>

#include "af/modalities/audio.hpp"

namespace af::server {

struct InputAudioOptions {
  // Largest decoded audio file a part may carry (--max-audio-bytes): 4 MiB holds two minutes of
  // 16 kHz 16-bit mono WAV (the model hears 30 s). The request body limit (--max-body-bytes, 8 MiB)
  // applies to the base64 text first.
  uint64_t max_bytes = 4ull << 20;
  modalities::AudioLimits limits;  // duration, sample rate and channel bounds
};

// `data` is the part's base64 text, `format` its "format"; `param` names the part in errors.
modalities::Audio load_input_audio(const std::string& data, const std::string& format,
                                   const std::string& param, const InputAudioOptions& options);

}  // namespace af::server
