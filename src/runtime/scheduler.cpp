#include "af/runtime/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/prompt.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "runtime/json_constraint.hpp"
#include "runtime/stop_strings.hpp"
#include "runtime/token_ids.hpp"

namespace af::runtime {

const char* finish_reason(StopCause cause) {
  switch (cause) {
    case StopCause::kEos:
    case StopCause::kStopString:
    case StopCause::kJsonComplete:
      return "stop";
    case StopCause::kMaxTokens:
    case StopCause::kContextFull:
      return "length";
    case StopCause::kCancelled:
      return "cancelled";
    case StopCause::kError:
      return "error";
  }
  return "error";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// on_done is the request's last word: an exception from it has no request left to fail, and
// must not end the scheduler thread (std::terminate) or skip the bookkeeping around the call.
void report_done(const std::function<void(const RequestResult&)>& done,
                 const RequestResult& result) noexcept {
  if (!done) return;
  try {
    done(result);
  } catch (...) {
  }
}

size_t common_prefix(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

struct Queued {
  uint64_t id;
  GenerationRequest request;  // prompt expanded
  Clock::time_point submitted;
  ImagePrompt placed;          // where the image rows go (mask empty for text)
  std::vector<uint64_t> keys;  // [prompt.size()] cache key of every prompt position
};

// A request in a slot.
struct Running {
  // index: the vocabulary index, built on first use (JSON requests only).
  Running(Queued&& q, const tok::Tokenizer& tokenizer, const std::vector<int32_t>& masked,
          const std::vector<int32_t>& eos,
          const std::function<std::shared_ptr<const VocabIndex>()>& index)
      : id(q.id),
        request(std::move(q.request)),
        submitted(q.submitted),
        placed(std::move(q.placed)),
        keys(std::move(q.keys)),
        sampler(request.sampling),
        decoder(tokenizer),
        stop(request.stop),
        history(request.prompt) {
    sampler.set_masked_ids(masked);  // ids without text are never generated
    // The prompt goes through the decoder first (its text is dropped), so the generated text
    // reads as the prompt's continuation (" there", not "there"), as Session::generate does.
    bool text_started = false;
    for (int32_t id : request.prompt) text_started = !decoder.push(id).empty() || text_started;
    if (request.json_schema || request.json_object) {
      auto grammar = request.json_schema ? request.json_schema : json_object_grammar();
      json.emplace(std::move(grammar), tokenizer, index(), eos, text_started);
    }
  }

  uint64_t id;
  GenerationRequest request;
  Clock::time_point submitted;
  ImagePrompt placed;
  std::vector<int32_t> step_positions;  // M-RoPE positions of the prefill step in progress
  std::vector<uint64_t> keys;
  std::vector<float> rows;  // image rows of the masked prompt positions >= the reused prefix
  size_t rows_used = 0;     // of those, already computed
  ops::Sampler sampler;
  tok::StreamDecoder decoder;
  StopStringFilter stop;
  std::vector<int32_t> history;  // prompt + generated: what the penalties look at
  size_t prefill_pos = 0;        // next prompt index to compute
  int32_t pending = -1;          // sampled and streamed, not yet in the cache
  RequestResult result;
  bool first_token = true;
  std::optional<JsonConstraint> json;  // json_object / json_schema
};

struct Slot {
  std::unique_ptr<models::SequenceState> sequence;
  std::vector<uint64_t> cached;  // keys of the cache's positions (size == sequence->n_past())
  std::unique_ptr<Running> running;
  uint64_t admitted = 0;  // admission order, for prefill fairness
};

}  // namespace

struct Scheduler::Impl {
  Impl(models::CausalLM& m, const tok::Tokenizer& t, const SchedulerOptions& o)
      : model(m), tokenizer(t), options(o) {
    AF_CHECK(options.parallel >= 1, ErrorCode::kInvalidArgument, "scheduler",
             "parallel must be >= 1, got ", options.parallel);
    AF_CHECK(options.prefill_chunk >= 1, ErrorCode::kInvalidArgument, "scheduler",
             "prefill_chunk must be >= 1, got ", options.prefill_chunk);
    const int64_t model_context = model.info().context_length;
    context = options.slot_context > 0 ? options.slot_context : model_context;
    vocab = model.config().vocab_size;
    masked = unassigned_ids(tokenizer, vocab);
    multimodal = dynamic_cast<models::MultimodalLM*>(&model);
    encoder_cache.set_max_bytes(options.encoder_cache_mb << 20);
    eos = options.eos_ids;
    if (eos.empty()) {
      eos = model.info().eos_token_ids;
      if (tokenizer.eos_id() >= 0) eos.push_back(tokenizer.eos_id());
    }
    for (int i = 0; i < options.parallel; ++i) {
      Slot slot;
      slot.sequence = model.new_sequence(context);
      slots.push_back(std::move(slot));
    }
    context = slots.front().sequence->capacity();
    thread = std::thread([this] { loop(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    thread.join();
  }

  void loop();
  // Ends every running request with kError: for failures outside any one request.
  void fail_running(const std::string& error);
  void admit_locked();
  void step();
  void handle_token(Slot& slot, float* logits);
  void finish(Slot& slot, StopCause cause, std::string error = {});
  void emit(Running& r, std::string text, const ops::SampledToken& sampled);
  // The image rows r's prompt needs from position `from` on (encoder-output cache first).
  void gather_rows(Running& r, size_t from);
  models::InputEmbeddings prefill_embeddings(Running& r, size_t n);

  models::CausalLM& model;
  const tok::Tokenizer& tokenizer;
  SchedulerOptions options;
  models::MultimodalLM* multimodal = nullptr;  // set when the model takes images
  EncoderCache encoder_cache;
  int64_t context = 0;
  int64_t vocab = 0;            // logits per row
  std::vector<int32_t> masked;  // ids without text (runtime::unassigned_ids), never sampled
  std::vector<int32_t> eos;
  std::vector<Slot> slots;                        // only the scheduler thread touches them
  std::shared_ptr<const VocabIndex> vocab_index;  // built on the first JSON request

  mutable std::mutex mutex;  // guards what follows
  std::condition_variable wake;
  std::deque<Queued> queue;
  std::unordered_set<uint64_t> cancelled;
  std::set<uint64_t> live;  // queued or running ids
  bool stopping = false;
  bool cancel_everything = false;
  uint64_t next_id = 1;
  uint64_t next_admission = 1;
  SchedulerStats stats;
  std::thread thread;
};

void Scheduler::Impl::emit(Running& r, std::string text, const ops::SampledToken& sampled) {
  GeneratedToken token{sampled.id, sampled.logprob, sampled.top};
  r.result.text += text;
  r.result.tokens.push_back(token);
  if (r.request.on_chunk) r.request.on_chunk(StreamChunk{std::move(text), std::move(token)});
}

void Scheduler::Impl::finish(Slot& slot, StopCause cause, std::string error) {
  Running& r = *slot.running;
  if (cause != StopCause::kStopString && cause != StopCause::kCancelled &&
      cause != StopCause::kError) {
    // What the decoder and the stop matcher still hold is part of the answer.
    std::string rest = r.stop.push(r.decoder.flush());
    if (!r.stop.matched()) rest += r.stop.flush();
    if (!rest.empty()) {
      r.result.text += rest;
      if (r.request.on_chunk) r.request.on_chunk(StreamChunk{std::move(rest), {-1, 0.0f, {}}});
    }
  }
  const auto now = Clock::now();
  r.result.cause = cause;
  r.result.error = std::move(error);
  r.result.total_seconds = seconds_between(r.submitted, now);
  if (r.first_token) r.result.first_token_seconds = r.result.total_seconds;
  {
    std::lock_guard lock(mutex);
    live.erase(r.id);
    cancelled.erase(r.id);
    stats.active -= 1;
  }
  auto done = std::move(r.request.on_done);
  RequestResult result = std::move(r.result);
  slot.running.reset();
  report_done(done, result);
}

void Scheduler::Impl::handle_token(Slot& slot, float* logits) {
  Running& r = *slot.running;
  if (r.json && !r.json->mask({logits, static_cast<size_t>(vocab)})) {
    finish(slot, StopCause::kError, "no token of the vocabulary continues the JSON text");
    return;
  }
  const ops::SampledToken sampled =
      r.sampler.sample({logits, static_cast<size_t>(vocab)}, r.history);
  if (r.first_token) {
    r.first_token = false;
    r.result.first_token_seconds = seconds_between(r.submitted, Clock::now());
  }
  if (std::find(eos.begin(), eos.end(), sampled.id) != eos.end()) {
    finish(slot, StopCause::kEos);
    return;
  }
  {
    std::lock_guard lock(mutex);
    stats.generated_tokens += 1;
  }
  r.history.push_back(sampled.id);
  if (r.json) r.json->accept(sampled.id);
  emit(r, r.stop.push(r.decoder.push(sampled.id)), sampled);
  const int64_t generated = static_cast<int64_t>(r.result.tokens.size());
  if (r.stop.matched()) {
    finish(slot, StopCause::kStopString);
  } else if (r.json && r.json->closed()) {
    finish(slot, StopCause::kJsonComplete);
  } else if (r.request.max_tokens >= 0 && generated >= r.request.max_tokens) {
    finish(slot, StopCause::kMaxTokens);
  } else if (slot.sequence->n_past() >= context) {
    finish(slot, StopCause::kContextFull);
  } else {
    r.pending = sampled.id;
  }
}

void Scheduler::Impl::admit_locked() {
  // Cancelled requests that never reached a slot.
  for (auto it = queue.begin(); it != queue.end();) {
    if (cancel_everything || cancelled.count(it->id)) {
      RequestResult result;
      result.cause = StopCause::kCancelled;
      result.prompt_tokens = static_cast<int64_t>(it->request.prompt.size());
      result.total_seconds = seconds_between(it->submitted, Clock::now());
      auto done = std::move(it->request.on_done);
      live.erase(it->id);
      cancelled.erase(it->id);
      it = queue.erase(it);
      stats.queued -= 1;
      report_done(done, result);  // callbacks must not call back into the scheduler
    } else {
      ++it;
    }
  }
  while (!queue.empty()) {
    Slot* best = nullptr;
    size_t best_prefix = 0;
    const std::vector<uint64_t>& prompt = queue.front().keys;
    for (Slot& slot : slots) {
      if (slot.running) continue;
      const size_t prefix = common_prefix(slot.cached, prompt);
      // Longest shared prefix; on ties the emptier cache, so long histories stay for reuse.
      if (!best || prefix > best_prefix ||
          (prefix == best_prefix && slot.cached.size() < best->cached.size())) {
        best = &slot;
        best_prefix = prefix;
      }
    }
    if (!best) break;
    Queued q = std::move(queue.front());
    queue.pop_front();
    stats.queued -= 1;
    // The constructor moves q.request away: keep what a failure report needs.
    const uint64_t id = q.id;
    const auto submitted = q.submitted;
    const auto n_prompt = static_cast<int64_t>(q.request.prompt.size());
    const auto on_done = q.request.on_done;
    std::unique_ptr<Running> running;
    try {
      running = std::make_unique<Running>(std::move(q), tokenizer, masked, eos, [this] {
        if (!vocab_index) vocab_index = make_vocab_index(tokenizer, vocab);
        return vocab_index;
      });
    } catch (const std::exception& e) {
      // An exception must not leave the scheduler thread: this request fails, the rest go on.
      RequestResult result;
      result.cause = StopCause::kError;
      result.error = e.what();
      result.prompt_tokens = n_prompt;
      result.total_seconds = seconds_between(submitted, Clock::now());
      live.erase(id);
      cancelled.erase(id);
      report_done(on_done, result);
      continue;
    }
    stats.active += 1;
    // At least the last prompt token is computed again: its logits choose the first token.
    size_t reuse = std::min(best_prefix, static_cast<size_t>(n_prompt) - 1);
    best->sequence->truncate(static_cast<int64_t>(reuse));
    // A sliding-window model's ring may keep fewer (models/decoder_lm.cpp, DecoderSequence).
    reuse = std::min(reuse, static_cast<size_t>(best->sequence->n_past()));
    best->cached.resize(reuse);
    best->admitted = next_admission++;
    best->running = std::move(running);
    Running& r = *best->running;
    r.prefill_pos = reuse;
    try {
      gather_rows(r, reuse);
    } catch (const std::exception& e) {
      finish(*best, StopCause::kError, e.what());  // e.g. an image the encoder refuses
      continue;
    }
    r.result.prompt_tokens = static_cast<int64_t>(r.request.prompt.size());
    r.result.cached_prompt_tokens = static_cast<int64_t>(reuse);
    r.result.queue_seconds = seconds_between(r.submitted, Clock::now());
    stats.prompt_tokens += r.result.prompt_tokens;
    stats.prompt_tokens_computed += r.result.prompt_tokens - static_cast<int64_t>(reuse);
  }
}

void Scheduler::Impl::step() {
  // Cancellations of running requests free their slots before the batch is built.
  {
    std::unique_lock lock(mutex);
    std::vector<Slot*> to_cancel;
    for (Slot& slot : slots) {
      if (slot.running && (cancel_everything || cancelled.count(slot.running->id))) {
        to_cancel.push_back(&slot);
      }
    }
    lock.unlock();
    for (Slot* slot : to_cancel) finish(*slot, StopCause::kCancelled);
  }

  std::vector<models::BatchItem> items;
  std::vector<Slot*> item_slots;
  std::vector<bool> samples;  // the item's logits row picks a token
  int64_t decodes = 0;
  for (Slot& slot : slots) {
    if (slot.running && slot.running->pending >= 0) {
      items.push_back({slot.sequence.get(), {&slot.running->pending, 1}, false});
      item_slots.push_back(&slot);
      samples.push_back(true);
      ++decodes;
    }
  }
  std::vector<Slot*> prefilling;
  for (Slot& slot : slots) {
    if (slot.running && slot.running->pending < 0) prefilling.push_back(&slot);
  }
  std::sort(prefilling.begin(), prefilling.end(),
            [](const Slot* a, const Slot* b) { return a->admitted < b->admitted; });
  int64_t budget = options.prefill_chunk;
  for (Slot* slot : prefilling) {
    if (budget <= 0) break;
    Running& r = *slot->running;
    const size_t remaining = r.request.prompt.size() - r.prefill_pos;
    const size_t n = std::min(remaining, static_cast<size_t>(budget));
    items.push_back({slot->sequence.get(), std::span(r.request.prompt).subspan(r.prefill_pos, n),
                     false, prefill_embeddings(r, n)});
    item_slots.push_back(slot);
    samples.push_back(n == remaining);
    budget -= static_cast<int64_t>(n);
  }
  if (items.empty()) return;

  const auto t0 = Clock::now();
  std::vector<float> logits;
  try {
    logits = model.forward_batch(items);
  } catch (const std::exception& e) {
    for (Slot* slot : item_slots) {
      slot->sequence->truncate(0);
      slot->cached.clear();
      finish(*slot, StopCause::kError, e.what());
    }
    return;
  }
  for (size_t i = 0; i < items.size(); ++i) {
    Slot& slot = *item_slots[i];
    Running& r = *slot.running;
    if (r.pending < 0) {
      const auto first = r.keys.begin() + static_cast<std::ptrdiff_t>(r.prefill_pos);
      slot.cached.insert(slot.cached.end(), first,
                         first + static_cast<std::ptrdiff_t>(items[i].ids.size()));
      r.prefill_pos += items[i].ids.size();
    } else {
      slot.cached.push_back(token_key(r.pending));
    }
    slot.running->pending = -1;
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (!samples[i]) continue;
    try {
      handle_token(*item_slots[i], logits.data() + i * vocab);
    } catch (const std::exception& e) {
      // e.g. NaN logits: this request fails, the others go on.
      if (item_slots[i]->running) finish(*item_slots[i], StopCause::kError, e.what());
    }
  }
  const auto t1 = Clock::now();
  std::lock_guard lock(mutex);
  stats.steps += 1;
  stats.busy_seconds += seconds_between(t0, t1);
  if (decodes > 0) {
    stats.generate_seconds += seconds_between(t0, t1);
    stats.decode_tokens_in_steps += decodes;
  }
}

void Scheduler::Impl::gather_rows(Running& r, size_t from) {
  r.rows.clear();
  r.rows_used = 0;
  if (r.placed.mask.empty()) return;
  const auto first = static_cast<size_t>(
      std::count(r.placed.mask.begin(), r.placed.mask.begin() + static_cast<std::ptrdiff_t>(from),
                 uint8_t{1}));
  const bool audio = !r.request.audios.empty();
  std::vector<std::shared_ptr<const models::ImageFeatures>> features(
      audio ? r.request.audios.size() : r.request.images.size());
  for (size_t k = first; k < r.placed.image_of.size(); ++k) {
    const auto image = static_cast<size_t>(r.placed.image_of[k]);
    if (!features[image]) {
      features[image] =
          audio ? encoder_cache.get(*multimodal->audio_encoder(), r.request.audios[image])
                : encoder_cache.get(multimodal->image_encoder(), r.request.images[image]);
      AF_CHECK(features[image]->hidden == model.config().hidden_size, ErrorCode::kInternal,
               "scheduler", "image rows of ", features[image]->hidden, " floats for hidden size ",
               model.config().hidden_size);
    }
    const auto hidden = static_cast<size_t>(features[image]->hidden);
    const auto row = static_cast<size_t>(r.placed.row_of[k]);
    AF_CHECK((row + 1) * hidden <= features[image]->rows.size(), ErrorCode::kInternal, "scheduler",
             "image ", image, " encoded to fewer rows than its placeholders");
    const float* src = features[image]->rows.data() + row * hidden;
    r.rows.insert(r.rows.end(), src, src + hidden);
  }
}

models::InputEmbeddings Scheduler::Impl::prefill_embeddings(Running& r, size_t n) {
  r.step_positions.clear();
  if (!r.placed.positions.empty()) {  // M-RoPE: this step's slice of each component
    const size_t total = r.placed.ids.size();
    for (size_t c = 0; c < 3; ++c) {
      const auto begin =
          r.placed.positions.begin() + static_cast<std::ptrdiff_t>(c * total + r.prefill_pos);
      r.step_positions.insert(r.step_positions.end(), begin,
                              begin + static_cast<std::ptrdiff_t>(n));
    }
  }
  if (r.placed.mask.empty()) return {{}, {}, r.step_positions};
  const std::span<const uint8_t> mask = std::span(r.placed.mask).subspan(r.prefill_pos, n);
  const auto count = static_cast<size_t>(std::count(mask.begin(), mask.end(), uint8_t{1}));
  const auto hidden = static_cast<size_t>(model.config().hidden_size);
  const std::span<const float> rows =
      std::span(r.rows).subspan(r.rows_used * hidden, count * hidden);
  r.rows_used += count;  // the step runs these rows (a failed step ends the request)
  return {mask, rows, r.step_positions};
}

void Scheduler::Impl::fail_running(const std::string& error) {
  for (Slot& slot : slots) {
    if (!slot.running) continue;
    slot.sequence->truncate(0);
    slot.cached.clear();
    try {
      finish(slot, StopCause::kError, error);
    } catch (...) {
      slot.running.reset();  // its callback threw too: drop it rather than end the thread
    }
  }
}

void Scheduler::Impl::loop() {
  for (;;) {
    // Nothing may escape this thread (std::terminate): a failure outside any one request (a
    // throwing callback, memory) fails the running requests and the loop goes on.
    try {
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] {
          if (stopping || !queue.empty()) return true;
          for (const Slot& slot : slots) {
            if (slot.running) return true;
          }
          return false;
        });
        if (stopping) cancel_everything = true;
        admit_locked();
      }
      step();
    } catch (const std::exception& e) {
      fail_running(e.what());
    } catch (...) {
      fail_running("unknown error on the scheduler thread");
    }
    std::lock_guard lock(mutex);
    if (stopping) {
      bool idle = queue.empty();
      for (const Slot& slot : slots) idle = idle && !slot.running;
      if (idle) return;
    }
  }
}

Scheduler::Scheduler(models::CausalLM& model, const tok::Tokenizer& tokenizer,
                     const SchedulerOptions& options)
    : impl_(std::make_unique<Impl>(model, tokenizer, options)) {}

Scheduler::~Scheduler() = default;

namespace {

// The placeholder token of the request's media (images, or audio), each one's token count and
// content hash (audio tagged, so it never equals an image's).
int32_t media_counts(models::MultimodalLM& model, const GenerationRequest& request,
                     std::vector<int64_t>& counts, std::vector<std::string>& hashes) {
  if (request.audios.empty()) {
    AF_CHECK(request.images.empty() || model.image_token_id() >= 0, ErrorCode::kInvalidArgument,
             "scheduler", "this model (", model.info().architecture, ") takes no images");
    for (const modalities::Image& image : request.images) {
      counts.push_back(model.image_encoder().num_image_tokens(image));
      hashes.push_back(image.hash());
    }
    return model.image_token_id();
  }
  AF_CHECK(model.audio_encoder() != nullptr, ErrorCode::kInvalidArgument, "scheduler",
           "this model (", model.info().architecture, ") takes no audio");
  AF_CHECK(request.images.empty(), ErrorCode::kInvalidArgument, "scheduler",
           "a prompt takes images or audio, not both");
  for (const modalities::Audio& audio : request.audios) {
    counts.push_back(model.audio_encoder()->num_audio_tokens(audio));
    hashes.push_back("audio:" + audio.hash());
  }
  return model.audio_token_id();
}

}  // namespace

std::optional<uint64_t> Scheduler::submit(GenerationRequest request) {
  Impl& s = *impl_;
  AF_CHECK(!request.prompt.empty(), ErrorCode::kInvalidArgument, "scheduler",
           "the prompt is empty");
  check_prompt_ids(request.prompt, &s.tokenizer, s.vocab, "scheduler");
  ImagePrompt placed;
  std::vector<uint64_t> keys;
  if (s.multimodal) {
    std::vector<int64_t> counts;
    std::vector<std::string> hashes;
    const int32_t token = media_counts(*s.multimodal, request, counts, hashes);
    if (!request.images.empty()) {  // markup models (MiniCPM-V) expand or refuse their own
      if (auto expanded = s.multimodal->expand_image_placeholders(request.prompt, request.images))
        request.prompt = std::move(*expanded);
    }
    placed = expand_image_tokens(request.prompt, token, counts);
    keys = position_keys(placed, hashes);
    if (request.audios.empty())
      placed.positions = s.multimodal->mrope_positions(placed.ids, request.images);
    request.prompt = placed.ids;
    if (counts.empty()) placed.mask.clear();  // text only: no embeddings
  } else {
    AF_CHECK(request.images.empty(), ErrorCode::kInvalidArgument, "scheduler",
             "this model takes no images (it is a text-only model)");
    AF_CHECK(request.audios.empty(), ErrorCode::kInvalidArgument, "scheduler",
             "this model takes no audio (it is a text-only model)");
    for (int32_t id : request.prompt) keys.push_back(token_key(id));
  }
  const int64_t n_prompt = static_cast<int64_t>(request.prompt.size());
  AF_CHECK(n_prompt < s.context, ErrorCode::kInvalidArgument, "scheduler", "the prompt has ",
           n_prompt, " tokens, but the context holds ", s.context,
           " (the prompt and at least one generated token must fit)");
  AF_CHECK(request.max_tokens == -1 || request.max_tokens >= 1, ErrorCode::kInvalidArgument,
           "scheduler", "max_tokens must be >= 1, got ", request.max_tokens);
  AF_CHECK(request.max_tokens == -1 || n_prompt + request.max_tokens <= s.context,
           ErrorCode::kInvalidArgument, "scheduler", "the prompt (", n_prompt,
           " tokens) plus max_tokens (", request.max_tokens, ") exceeds the context of ", s.context,
           " tokens");
  for (const std::string& stop : request.stop) {
    AF_CHECK(!stop.empty(), ErrorCode::kInvalidArgument, "scheduler",
             "stop strings must not be empty");
  }
  for (const auto& [id, bias] : request.sampling.logit_bias) {
    AF_CHECK(id >= 0 && id < s.vocab, ErrorCode::kInvalidArgument, "scheduler",
             "logit_bias names token ", id, ", outside the vocabulary of ", s.vocab);
  }
  ops::Sampler check(request.sampling);  // throws on invalid parameters, naming the field

  std::lock_guard lock(s.mutex);
  if (s.stopping || s.queue.size() >= s.options.max_queue) return std::nullopt;
  const uint64_t id = s.next_id++;
  s.queue.push_back({id, std::move(request), Clock::now(), std::move(placed), std::move(keys)});
  s.live.insert(id);
  s.stats.queued += 1;
  s.wake.notify_all();
  return id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->live.count(id)) impl_->cancelled.insert(id);
  impl_->wake.notify_all();
}

void Scheduler::cancel_all() {
  std::lock_guard lock(impl_->mutex);
  impl_->cancelled.insert(impl_->live.begin(), impl_->live.end());
  impl_->wake.notify_all();
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->stats;
  }
  s.image_encodes = impl_->encoder_cache.encoder_calls();  // the cache has its own lock
  return s;
}

int64_t Scheduler::slot_context() const { return impl_->context; }

const SchedulerOptions& Scheduler::options() const { return impl_->options; }

}  // namespace af::runtime
