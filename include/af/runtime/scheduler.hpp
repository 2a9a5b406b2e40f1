#pragma once
// Continuous batching for serving many requests with one model.
//
// One thread owns the model. Requests wait in a bounded queue and are admitted into up to
// `parallel` slots, each with its own KV cache (models::SequenceState). Every step runs one
// CausalLM::forward_batch holding one decode token for every running slot plus up to
// `prefill_chunk` prompt tokens of slots that are still reading their prompt (oldest admission
// first), so running streams keep flowing while new prompts are read. A slot that finishes keeps
// its cache and ids: a new request goes to the free slot whose cached ids share the longest
// prefix with its prompt, and only the rest of the prompt is computed.
//
// Sampling is per request (ops::Sampler), text is streamed as whole UTF-8 (tok::StreamDecoder),
// stop strings are matched across tokens and never emitted. Greedy results do not depend on
// what else runs in the batch.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "af/modalities/audio.hpp"
#include "af/modalities/image.hpp"
#include "af/ops/sampling.hpp"
#include "af/runtime/json_schema.hpp"

namespace af::models {
class CausalLM;
}
namespace af::tok {
class Tokenizer;
}

namespace af::runtime {

struct SchedulerOptions {
  int parallel = 4;             // slots decoded together
  int64_t slot_context = 0;     // KV cache rows per slot; 0: the model's context
  int64_t prefill_chunk = 256;  // prompt tokens per step, over all slots reading a prompt
  size_t max_queue = 64;        // requests waiting for a slot; submit() refuses more
  // End-of-sequence ids; empty: the model's (ModelInfo::eos_token_ids) and the tokenizer's EOS.
  std::vector<int32_t> eos_ids = {};
  // Multimodal models: bound of the encoder-output cache (by image content hash), in MiB.
  uint64_t encoder_cache_mb = 256;
};

enum class StopCause {
  kEos,           // the model produced one of its end tokens
  kStopString,    // a requested stop string appeared (it is not part of the text)
  kMaxTokens,     // max_tokens generated
  kContextFull,   // the slot's KV cache is full
  kJsonComplete,  // json_object / json_schema: the document is whole and nothing can follow
  kCancelled,     // cancel() or shutdown
  kError,         // the model failed; RequestResult::error says why
};

// OpenAI's finish_reason: "stop" (EOS, stop string, JSON done), "length" (max_tokens, context),
// else "cancelled" / "error", which are not OpenAI values: labels for logs and metrics only
// (af-server sends an error object or event for such a request instead).
const char* finish_reason(StopCause cause);

struct GeneratedToken {
  int32_t id = 0;
  float logprob = 0.0f;                // log-softmax before temperature/truncation
  std::vector<ops::TokenLogprob> top;  // SamplingParams::top_logprobs alternatives
};

// What one step produced for one request: a sampled token and the text it released. Text may
// be empty (an incomplete UTF-8 character, or text held back while it could start a stop string)
// and a later chunk may release the text of several tokens at once.
struct StreamChunk {
  std::string text;
  GeneratedToken token;
};

struct RequestResult {
  StopCause cause = StopCause::kMaxTokens;
  std::string text;                    // everything streamed, without the stop string
  std::vector<GeneratedToken> tokens;  // every generated token (EOS excluded)
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens reused from a slot's cache
  std::string error;                 // kError only
  double queue_seconds = 0;          // submit to admission
  double first_token_seconds = 0;    // submit to the first sampled token
  double total_seconds = 0;          // submit to completion
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // non-empty; ids of the model's vocabulary
  // Images for a multimodal model (models::MultimodalLM), in prompt order: the prompt holds its
  // image token once per image (expanded by submit() as the HF processor does) or already
  // expanded. Slots reuse cached image rows only for the same image content; images are encoded
  // on the scheduler thread when admitted (through the encoder-output cache).
  std::vector<modalities::Image> images = {};
  // Audio for an audio-language model (Qwen2-Audio), placed as images are, by its audio token
  // ("<|AUDIO|>"). A request takes images or audio, not both.
  std::vector<modalities::Audio> audios = {};
  int64_t max_tokens = -1;  // -1: until EOS, a stop string or a full context
  ops::SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (non-empty)
  // Constrain the text to one JSON object (RFC 8259; nesting and whitespace bounded by
  // JsonSchemaLimits' defaults): tokens that cannot continue such a document are masked before
  // sampling, EOS is allowed only once the object is closed, and generation stops when it closes.
  // Special tokens other than EOS are masked. max_tokens can still cut the object short ("length").
  bool json_object = false;
  // Constrain the text to a document valid under this compiled JSON Schema
  // (runtime::compile_json_schema), as json_object does; generation stops once nothing can
  // follow, EOS is allowed only when the document is whole. Takes precedence over json_object.
  std::shared_ptr<const JsonGrammar> json_schema = nullptr;
  // Called on the scheduler thread: keep them short, never call back into the scheduler. An
  // exception from on_chunk fails that request (kError); one from on_done is dropped. Neither
  // reaches the thread's entry, nor does any other error: it fails requests, never the process.
  std::function<void(const StreamChunk&)> on_chunk;   // optional
  std::function<void(const RequestResult&)> on_done;  // exactly once per accepted request
};

struct SchedulerStats {
  int64_t queued = 0;                  // waiting for a slot
  int64_t active = 0;                  // in a slot
  int64_t prompt_tokens = 0;           // total prompt tokens of finished-or-running requests
  int64_t prompt_tokens_computed = 0;  // of those, computed (not reused from a cache)
  int64_t generated_tokens = 0;
  int64_t steps = 0;                   // forward_batch calls
  double busy_seconds = 0;             // spent in steps
  double generate_seconds = 0;         // spent in steps that decoded at least one token
  int64_t decode_tokens_in_steps = 0;  // tokens sampled in those steps
  uint64_t image_encodes = 0;          // image encoder runs (encoder-output cache misses)
};

class Scheduler {
 public:
  // The model and tokenizer must outlive the scheduler; only the scheduler thread uses the model.
  Scheduler(models::CausalLM& model, const tok::Tokenizer& tokenizer,
            const SchedulerOptions& options);
  ~Scheduler();  // cancels what is queued or running (their on_done runs), joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request and returns its id, or nullopt when the queue is full (overload: the
  // caller should answer "retry later"). Throws af::Error kInvalidArgument for a request that can
  // never run: empty prompt, ids outside the vocabulary or that the tokenizer does not assign
  // (holes, embedding padding; such ids are never sampled either), a prompt that leaves no room in
  // a slot's context, prompt + max_tokens beyond it, invalid sampling parameters.
  std::optional<uint64_t> submit(GenerationRequest request);
  // Stops a queued or running request soon (within one step); its slot is free for the next
  // request. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Cancels every queued and running request.
  void cancel_all();

  SchedulerStats stats() const;
  int64_t slot_context() const;
  const SchedulerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace af::runtime
