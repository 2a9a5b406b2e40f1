#include "runtime/json_constraint.hpp"

#include <limits>
#include <string>

#include "af/tokenizer/tokenizer.hpp"

namespace af::runtime {

std::shared_ptr<const VocabIndex> make_vocab_index(const tok::Tokenizer& tokenizer, int64_t vocab) {
  std::vector<std::string> bytes(static_cast<size_t>(vocab));
  const int64_t n = std::min<int64_t>(vocab, tokenizer.vocab_size());
  for (int32_t id = 0; id < n; ++id) {
    // Special tokens (and holes) have no place in a JSON text.
    if (tokenizer.is_assigned(id) && !tokenizer.is_special(id)) {
      bytes[id] = tokenizer.token_bytes(id, false);
    }
  }
  return std::make_shared<VocabIndex>(bytes);
}

JsonConstraint::JsonConstraint(std::shared_ptr<const JsonGrammar> grammar,
                               const tok::Tokenizer& tokenizer,
                               std::shared_ptr<const VocabIndex> index, std::vector<int32_t> eos,
                               bool text_started)
    : matcher_(std::move(grammar)),
      tokenizer_(tokenizer),
      index_(std::move(index)),
      eos_(std::move(eos)),
      text_started_(text_started) {}

bool JsonConstraint::mask(std::span<float> logits) {
  const size_t vocab = std::min(logits.size(), index_->vocab);
  if (text_started_) {
    matcher_.fill_mask(*index_, allowed_);
  } else {
    // The first text of the output: a token's bytes differ there (a SentencePiece word prefix
    // loses its space), so each token is tried on its own. Rare: prompts have text.
    allowed_.assign(index_->vocab, 0);
    for (size_t id = 0; id < vocab; ++id) {
      const auto i = static_cast<int32_t>(id);
      if (id >= static_cast<size_t>(tokenizer_.vocab_size()) || !tokenizer_.is_assigned(i) ||
          tokenizer_.is_special(i)) {
        continue;
      }
      const std::string bytes = tokenizer_.token_bytes(i, /*first=*/true);
      JsonMatcher next = matcher_;
      allowed_[id] = !bytes.empty() && next.push(bytes);
    }
  }
  const bool end = matcher_.accepts_end();
  for (int32_t id : eos_) {
    if (id >= 0 && static_cast<size_t>(id) < vocab) allowed_[id] = end;
  }
  bool any = false;
  for (size_t id = 0; id < logits.size(); ++id) {
    if (id < vocab && allowed_[id]) {
      any = true;
    } else {
      logits[id] = -std::numeric_limits<float>::infinity();
    }
  }
  return any;
}

void JsonConstraint::accept(int32_t id) {
  const std::string bytes = tokenizer_.token_bytes(id, !text_started_);
  matcher_.push(bytes);  // allowed by the mask
  text_started_ = text_started_ || !bytes.empty();
}

}  // namespace af::runtime
