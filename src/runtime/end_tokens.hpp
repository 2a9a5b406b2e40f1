#pragma once
// The ids that end generation for a built-in model: its config's eos_token_id (GGUF: EOS,
// end-of-turn, end-of-message), the tokenizer's EOS, and an HF folder's generation_config.json
// (which often lists more, e.g. <|im_end|> beside <|endoftext|>).
#include <cstdint>
#include <vector>

#include "af/models/causal_lm.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af::runtime {

std::vector<int32_t> default_end_tokens(const models::CausalLM& model,
                                        const tok::Tokenizer* tokenizer);

}  // namespace af::runtime
