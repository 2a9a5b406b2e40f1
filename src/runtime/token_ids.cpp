#include "runtime/token_ids.hpp"

#include "af/core/error.hpp"

namespace af::runtime {

std::vector<int32_t> unassigned_ids(const tok::Tokenizer& tokenizer, int64_t vocab_size) {
  std::vector<int32_t> ids;
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (!tokenizer.is_assigned(static_cast<int32_t>(id))) ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

void check_prompt_ids(std::span<const int32_t> prompt, const tok::Tokenizer* tokenizer,
                      int64_t vocab_size, const char* component) {
  for (size_t i = 0; i < prompt.size(); ++i) {
    const int32_t id = prompt[i];
    AF_CHECK(id >= 0 && id < vocab_size, ErrorCode::kInvalidArgument, component, "prompt token ", i,
             " is ", id, ", outside the vocabulary of the model (", vocab_size, " ids)");
    AF_CHECK(tokenizer == nullptr || tokenizer->is_assigned(id), ErrorCode::kInvalidArgument,
             component, "prompt token ", i, " is ", id,
             ", an id the tokenizer does not assign (a hole of its id space or a padding row "
             "of the embedding past its ",
             tokenizer ? tokenizer->vocab_size() : 0, " ids)");
  }
}

}  // namespace af::runtime
