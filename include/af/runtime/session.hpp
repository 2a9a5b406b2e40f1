#pragma once
// Generation on top of any af::Model: prompt -> tokens -> prefill -> sampled decode loop with
// stop conditions, streaming and timings; multi-turn chat that reuses the KV cache of the common
// prefix.
//
//   auto model = af::models::load("/path/to/Qwen2-0.5B");
//   auto session = af::SessionBuilder().build(std::move(model));
//   auto response = session.generate({.prompt = "你好", .max_tokens = 128});
//
// A Session is used from one thread at a time; cancel() may be called from any thread.
// Ids the tokenizer does not assign (holes of its id space, embedding rows past it) are never
// sampled nor reported in logprobs, and are refused in prompt_ids.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/model.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/image.hpp"
#include "af/modalities/video.hpp"
#include "af/ops/sampling.hpp"
#include "af/runtime/json_schema.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af {

enum class FinishReason {
  kStop,         // an end-of-sequence token or a stop string
  kLength,       // max_tokens generated
  kContextFull,  // the model's context has no room for another token
  kCancelled,    // cancel() or the streaming callback asked to stop
};
// "stop", "length", "context_full", "cancelled" (the first two as OpenAI spells them).
std::string_view to_string(FinishReason reason);

// One generated token as the streaming callback sees it.
struct TokenEvent {
  int32_t id = -1;
  // The text that became final with this token: whole UTF-8 characters, never part of a stop
  // string; may be empty while bytes of a character or a possible stop string are held back.
  std::string_view text;
  const ops::SampledToken* sampled = nullptr;  // id, logprob and the top alternatives
};

struct GenerateRequest {
  std::string prompt = {};   // text, tokenized with the tokenizer's special tokens (BOS)
  int32_t max_tokens = 256;  // must be >= 1
  // temperature 0 (greedy) by default. (Value-initialised: GCC 12 reports a false
  // "maybe uninitialized" for designated initialisers of requests with `{}` here.)
  ops::SamplingParams sampling = ops::SamplingParams();
  std::vector<std::string> stop =
      {};  // generation ends before the first occurrence of any of these
  // Used instead of `prompt` when not empty (no BOS added). Every id must be a token of the
  // tokenizer (not a hole of its id space, not a padding row of the embedding past it).
  std::vector<int32_t> prompt_ids = {};
  bool add_special = true;  // BOS etc. as the tokenizer's configuration says
  bool ignore_eos = false;  // keep generating past end-of-sequence tokens
  bool logprobs = false;    // fill GenerateResponse::tokens with logprobs
  // Called after every sampled token; return false to stop (finish_reason kCancelled).
  std::function<bool(const TokenEvent&)> on_token = {};
  // Prefill progress (prompt ids run so far, of those to run), e.g. for a progress bar. When
  // set, a prefill longer than kPrefillProgressChunk ids runs in chunks of that many.
  std::function<void(int64_t done, int64_t total)> on_prefill = {};
  static constexpr int64_t kPrefillProgressChunk = 256;
  // Images for a multimodal model (af::models::MultimodalLM), in prompt order. The prompt holds
  // the model's image token once per image (expanded to the image's token count as the HF
  // processor does) or already expanded; a prompt without any gets them right after BOS,
  // where LLaVA's processor convention puts the image. chat(): the images of this user turn.
  std::vector<modalities::Image> images = {};
  // Audio for an audio-language model (Qwen2-Audio), in prompt order, placed as images are
  // (the model's audio token, "<|AUDIO|>", once per audio or already expanded). A prompt takes
  // images or audio, not both. chat(): the audio of this user turn.
  std::vector<modalities::Audio> audios = {};
  // Videos for a video-language model (Qwen2-VL, Qwen2.5-VL: MultimodalLM::encode_video), in
  // prompt order, placed as images are (the model's video token, "<|video_pad|>", once per video
  // or already expanded). A prompt takes one kind of media. generate() only: chat() and
  // chat_completion() refuse videos.
  std::vector<modalities::Video> videos = {};
  // Constrain the text to a JSON document valid under this schema (runtime::compile_json_schema
  // or json_object_grammar): tokens that cannot continue it are masked, EOS is allowed only once
  // it is whole, and generation stops (kStop) when nothing can follow. Needs the tokenizer.
  std::shared_ptr<const runtime::JsonGrammar> json_schema = nullptr;
};

struct Timings {
  double prefill_ms = 0;  // prompt processing
  double decode_ms = 0;   // all decode steps
  double time_to_first_token_ms = 0;
  double prompt_tokens_per_s = 0;  // prefill_tokens / prefill time
  double generated_tokens_per_s =
      0;  // (generated - 1) / decode time, the first token comes from prefill
};

struct GenerateResponse {
  std::string text;          // the generated text, without stop strings and end tokens
  std::vector<int32_t> ids;  // every sampled id (including a final end token)
  FinishReason finish_reason = FinishReason::kStop;
  std::string stop_string;     // the stop string that ended generation, if one did
  int64_t prompt_tokens = 0;   // prompt length in tokens (image placeholders expanded)
  int64_t cached_tokens = 0;   // prompt tokens reused from the KV cache (not recomputed)
  int64_t prefill_tokens = 0;  // prompt tokens actually run through the model
  Timings timings;
  std::vector<ops::SampledToken> tokens;  // with request.logprobs: one per id
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // Images of the message: the chat template then gets content as parts, as transformers passes
  // them: {"type": "image"} per image and {"type": "text", "text": ...} for the text around them.
  std::vector<modalities::Image> images = {};
  // Where each image goes: the byte offset in `content` it precedes (the length of the text parts
  // given before it), nondecreasing, at most content.size(). Empty: all images before the text.
  std::vector<size_t> image_offsets = {};
  // Audio of the message ({"type": "audio"} parts), placed by audio_offsets as images are.
  std::vector<modalities::Audio> audios = {};
  std::vector<size_t> audio_offsets = {};
};

class Session {
 public:
  struct State;  // model, tokenizer, template, cache bookkeeping (src/runtime)
  explicit Session(std::unique_ptr<State> state);
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  // Generates from request.prompt (or prompt_ids). The longest common prefix with what the
  // model already holds is reused when the model can truncate its cache (af::models::CausalLM)
  // or when the new prompt extends the held sequence. Throws af::Error for an empty prompt,
  // max_tokens < 1, a prompt that does not fit the context, or a missing tokenizer.
  GenerateResponse generate(const GenerateRequest& request);

  // Chat: appends `user` to the history, renders the chat template with
  // add_generation_prompt, generates with `request` (its prompt is ignored) and appends the
  // reply to the history. The KV cache of the previous turns is reused. Special tokens are
  // parsed only in the template's own text: "</s>" or a role marker typed in a message stays
  // plain text (see SessionBuilder::parse_special_in_content).
  GenerateResponse chat(const std::string& user, GenerateRequest request = {});
  // Stateless chat: generates the assistant's reply to `messages` (system/user/assistant turns
  // as given; the history of chat() is neither used nor changed), with the same template,
  // special-token handling and cancellation as chat(). The KV cache of a common prefix with the
  // previous request is reused. For bindings and servers that keep the conversation themselves.
  GenerateResponse chat_completion(const std::vector<ChatMessage>& messages,
                                   GenerateRequest request = {});
  // Logits of every position of `ids` run as a fresh sequence: ids.size() rows of vocab_size
  // floats, row-major. Throws af::Error for no ids, an id the tokenizer does not assign, more ids
  // than the context holds, or a custom af::Model (only built-in models give every position).
  std::vector<float> logits(std::span<const int32_t> ids);
  // The prompt text the chat template renders for `messages` (+ the generation prompt).
  std::string render_chat(const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt) const;
  void set_system_prompt(std::string system);  // "" for none; takes effect after reset()
  const std::vector<ChatMessage>& history() const;
  // Clears the chat history (keeps the system prompt) and the model's state.
  void reset();
  // Drops the `turns` oldest user + assistant message pairs of the chat history (the system
  // prompt stays; a turn's images go with its message), so that a long conversation fits the
  // context again; the next chat() recomputes the cache past the kept prefix. Returns how many
  // pairs were dropped.
  size_t drop_oldest_turns(size_t turns);

  // Asks a running generate()/chat() on another thread to stop after the current token.
  void cancel();

  Model& model();
  const tok::Tokenizer* tokenizer() const;  // null for custom models built without one
  int64_t context_length() const;
  // The ids the model's state holds now (prompt + generated of the last request).
  const std::vector<int32_t>& cached_ids() const;
  // Images encoded so far (encoder outputs come from the cache by content hash when they can).
  uint64_t encoder_calls() const;

 private:
  // The ids of the chat prompt for `messages`; nullopt when cancel() stopped the tokenization.
  std::optional<std::vector<int32_t>> encode_chat_prompt(const std::vector<ChatMessage>& messages);

  std::unique_ptr<State> s_;
};

class SessionBuilder {
 public:
  // Tokenizer: by default, built-in models load the one beside their weights (the GGUF
  // vocabulary or the HF folder's tokenizer files). Custom models need one for text prompts.
  SessionBuilder& tokenizer(std::shared_ptr<const tok::Tokenizer> tokenizer);
  SessionBuilder& tokenizer_path(std::string path);
  // Chat template source (Jinja); by default the model's own (GGUF metadata or
  // tokenizer_config.json / chat_template.jinja).
  SessionBuilder& chat_template(std::string source);
  // Budgets of every chat-template rendering (defaults: TemplateLimits'); an exceeded one makes
  // chat() / render_chat() throw af::Error kOutOfRange naming the field.
  SessionBuilder& template_limits(const tok::TemplateLimits& limits);
  // End-of-sequence ids; by default the model's (config.json, generation_config.json, GGUF)
  // and the tokenizer's EOS / end-of-turn tokens.
  SessionBuilder& eos_ids(std::vector<int32_t> ids);
  SessionBuilder& system_prompt(std::string system);
  // chat(): true parses special-token text inside message content into control tokens, as
  // transformers' apply_chat_template + encode does (for parity tests). The default, false,
  // keeps it plain text so that a message cannot forge turns or end generation.
  SessionBuilder& parse_special_in_content(bool parse);
  // Bound of the encoder-output cache of a multimodal model, in MiB (default 256; 0 keeps none).
  SessionBuilder& encoder_cache_mb(uint64_t mb);

  Session build(std::unique_ptr<Model> model) const;

 private:
  std::shared_ptr<const tok::Tokenizer> tokenizer_;
  std::optional<std::string> tokenizer_path_, chat_template_, system_;
  std::optional<std::vector<int32_t>> eos_ids_;
  bool parse_special_in_content_ = false;
  uint64_t encoder_cache_mb_ = 256;
  tok::TemplateLimits template_limits_;
};

}  // namespace af
