#pragma once
// Which ids of a model's vocabulary are real tokens. The model's logits have vocab_size rows,
// but not every row is a token: tokenizers leave holes in their id space (between the regular
// and the added tokens) and embeddings are often padded past the tokenizer (Qwen2: 151646
// tokens, 151936 rows). Such ids have no text, so they are masked out of sampling and refused in
// prompts.
#include <cstdint>
#include <span>
#include <vector>

#include "af/tokenizer/tokenizer.hpp"

namespace af::runtime {

// The ids in [0, vocab_size) that `tokenizer` does not assign, in ascending order.
std::vector<int32_t> unassigned_ids(const tok::Tokenizer& tokenizer, int64_t vocab_size);

// Throws af::Error kInvalidArgument naming the first id of `prompt` (and its position) that is
// negative, >= vocab_size, or (with a tokenizer) an id the tokenizer does not assign.
void check_prompt_ids(std::span<const int32_t> prompt, const tok::Tokenizer* tokenizer,
                      int64_t vocab_size, const char* component);

}  // namespace af::runtime
