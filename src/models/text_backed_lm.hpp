#pragma once
// The shared half of the multimodal models (LLaVA, Qwen2-Audio, Qwen2-VL, MiniCPM-V): their text
// side is one CausalLM that every CausalLM call goes to, and their media encoders read weights
// that are views into the model's files, which this base keeps alive. A derived class adds its
// encoders and placeholder tokens only.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "af/io/model_files.hpp"
#include "af/models/multimodal.hpp"

namespace af::models {

class TextBackedLM : public MultimodalLM {
 public:
  ModelConfig config() const override { return text_->config(); }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return text_->n_past(); }
  void truncate(int64_t n) override { text_->truncate(n); }
  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    return text_->forward(ids, all_logits);
  }
  std::vector<float> forward_embeds(std::span<const int32_t> ids, bool all_logits,
                                    const InputEmbeddings& embeddings) override {
    return text_->forward_embeds(ids, all_logits, embeddings);
  }
  std::unique_ptr<SequenceState> new_sequence(int64_t context_length) override {
    return text_->new_sequence(context_length);
  }
  std::vector<float> forward_batch(std::span<const BatchItem> items) override {
    return text_->forward_batch(items);
  }

 protected:
  // `architecture` names the whole model in info(); empty keeps the text model's.
  TextBackedLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<CausalLM> text,
               std::string architecture)
      : files_(std::move(files)), text_(std::move(text)), info_(text_->info()) {
    if (!architecture.empty()) info_.architecture = std::move(architecture);
  }

  std::shared_ptr<const io::ModelFiles> files_;  // the encoders' weights are views into it
  std::unique_ptr<CausalLM> text_;

 private:
  ModelInfo info_;
};

}  // namespace af::models
