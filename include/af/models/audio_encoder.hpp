#pragma once
// Audio towers with their projector: 16 kHz audio in, the rows that replace its placeholder
// tokens in the text model out (Qwen2-Audio: log-mel -> Whisper-style encoder -> average
// pooling -> layer norm -> multi_modal_projector). A composition model (Qwen2-Audio) owns one
// beside its text decoder, on one shared backend. Rows use ImageFeatures' layout, so the
// runtime's encoder cache keeps both kinds of media by content hash.
#include <cstdint>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/image_encoder.hpp"

namespace af::models {

using AudioFeatures = ImageFeatures;  // [n_tokens, hidden] rows of one audio

class AudioEncoder {
 public:
  virtual ~AudioEncoder() = default;
  // The model's feature extractor (preprocessor_config.json).
  virtual const modalities::LogMelExtractor& extractor() const = 0;
  // How many placeholder tokens `audio` expands to, exactly as the HF processor counts them
  // (Qwen2AudioProcessor: from the frames of its first chunk_length seconds), without encoding.
  // Throws kInvalidArgument for audio too short to give one token (e.g. 0 samples).
  virtual int64_t num_audio_tokens(const modalities::Audio& audio) const = 0;
  // Encodes one audio: num_audio_tokens(audio) rows of output_hidden() floats. Audio longer than
  // the model's window is truncated to it, as the HF feature extractor truncates.
  virtual AudioFeatures encode(const modalities::Audio& audio) = 0;
  // Width of the rows (the text model's hidden_size the projector maps to).
  virtual int64_t output_hidden() const = 0;
};

}  // namespace af::models
