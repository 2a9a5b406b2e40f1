#pragma once
// Beam search over one Whisper window (whisper_decode_window's beam_size > 1 path).
#include <cstdint>
#include <span>
#include <vector>

#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"

namespace af::models {

// `ids` is the prompt already decoded in `state` and `logits` [vocab] the logits after it.
// Returns the best hypothesis' generated ids (eos included when it ended there) and their
// log-probabilities (transformers: the rules applied to log_softmax; CTranslate2: log_softmax of
// the processed logits).
WhisperWindow whisper_beam_search(Whisper& model, WhisperState& state, std::vector<int32_t> ids,
                                  std::vector<float> logits, const WhisperGenerationConfig& config,
                                  bool timestamps, int64_t max_length, const WhisperSearch& search);

}  // namespace af::models
