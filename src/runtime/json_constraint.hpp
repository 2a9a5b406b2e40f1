#pragma once
// A generation constrained by a JsonGrammar, token by token: the mask before each sample, the
// sampled token fed back, and when the document is over. Shared by Scheduler and Session.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/json_matcher.hpp"

namespace af::tok {
class Tokenizer;
}

namespace af::runtime {

// The vocabulary index of a tokenizer (special and unassigned ids excluded), for logits of
// `vocab` entries. Built once per tokenizer (about 0.2 s for 150k tokens).
std::shared_ptr<const VocabIndex> make_vocab_index(const tok::Tokenizer& tokenizer, int64_t vocab);

class JsonConstraint {
 public:
  // text_started: the decoder already produced text (the prompt's), so tokens continue it
  // (tok::Tokenizer::token_bytes' `first` is false).
  JsonConstraint(std::shared_ptr<const JsonGrammar> grammar, const tok::Tokenizer& tokenizer,
                 std::shared_ptr<const VocabIndex> index, std::vector<int32_t> eos,
                 bool text_started);

  // Sets every logit whose token cannot continue the document to -inf; EOS ids stay only once
  // the document is whole. False when no token is left.
  bool mask(std::span<float> logits);
  // The sampled token (not EOS).
  void accept(int32_t id);
  // The document is whole and nothing can follow: generation is over.
  bool closed() const { return matcher_.closed(); }

 private:
  JsonMatcher matcher_;
  const tok::Tokenizer& tokenizer_;
  std::shared_ptr<const VocabIndex> index_;
  std::vector<int32_t> eos_;
  bool text_started_;
  std::vector<uint8_t> allowed_;  // [vocab]
};

}  // namespace af::runtime
