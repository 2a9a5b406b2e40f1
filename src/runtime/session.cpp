#include "af/runtime/session.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/prompt.hpp"
#include "runtime/chat.hpp"
#include "runtime/end_tokens.hpp"
#include "runtime/json_constraint.hpp"
#include "runtime/stop_strings.hpp"
#include "runtime/token_ids.hpp"

namespace af {

namespace fs = std::filesystem;

namespace {
constexpr char kComponent[] = "generate";

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

std::string_view to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContextFull:
      return "context_full";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

// A prompt ready to run: ids with image (or audio) placeholders expanded, the cache key of every
// position, and where the media rows go. `placed` numbers the media of `images`, or of `audios`
// when that is set (a prompt takes one kind).
struct PreparedPrompt {
  runtime::ImagePrompt placed;
  std::vector<uint64_t> keys;
  const std::vector<modalities::Image>* images = nullptr;
  const std::vector<modalities::Audio>* audios = nullptr;
  // The request's videos, encoded while preparing (their grids decide the positions).
  std::shared_ptr<const std::vector<models::VideoFeatures>> videos;
  std::vector<int32_t> positions;  // M-RoPE models: [3][placed.ids.size()]; else empty
  size_t media_count() const {
    return videos ? videos->size() : audios ? audios->size() : images->size();
  }
  // Positions [from, to) of each component, as InputEmbeddings::positions takes them.
  std::vector<int32_t> positions_of(size_t from, size_t to) const {
    std::vector<int32_t> out;
    if (positions.empty()) return out;
    const size_t n = placed.ids.size();
    for (size_t c = 0; c < 3; ++c)
      out.insert(out.end(), positions.begin() + c * n + from, positions.begin() + c * n + to);
    return out;
  }
};

struct Session::State {
  std::unique_ptr<Model> model;
  models::CausalLM* causal = nullptr;          // set when the model can truncate its cache
  models::MultimodalLM* multimodal = nullptr;  // set when the model takes images
  runtime::EncoderCache encoder_cache;
  std::shared_ptr<const tok::Tokenizer> tokenizer;
  std::optional<runtime::ChatFormatter> chat;
  std::set<int32_t> eos;
  int64_t context = 0;
  std::string system;
  std::vector<ChatMessage> history;
  std::vector<int32_t> cached;  // ids the model's state holds
  std::vector<uint64_t> keys;   // [cached.size()]: their cache keys (runtime::position_keys)
  std::vector<int32_t> masked;  // ids of the model's vocabulary the tokenizer does not assign
  std::shared_ptr<const runtime::VocabIndex> vocab_index;  // built on the first JSON request
  bool parse_special_in_content = false;
  std::atomic<bool> cancel{false};

  std::vector<float> feed(std::span<const int32_t> ids) {
    std::vector<float> logits = model->forward_step(ids);
    cached.insert(cached.end(), ids.begin(), ids.end());
    for (int32_t id : ids) keys.push_back(runtime::token_key(id));
    return logits;
  }

  // Places the images of `req` in `prompt` (see GenerateRequest::images).
  PreparedPrompt prepare(std::vector<int32_t> prompt, const GenerateRequest& req) {
    PreparedPrompt p;
    p.images = &req.images;
    if (!multimodal) {
      AF_CHECK(req.images.empty(), ErrorCode::kUnsupported, kComponent,
               "this model takes no images (it is a text-only model)");
      AF_CHECK(req.audios.empty(), ErrorCode::kUnsupported, kComponent,
               "this model takes no audio (it is a text-only model)");
      AF_CHECK(req.videos.empty(), ErrorCode::kUnsupported, kComponent,
               "this model takes no video (it is a text-only model)");
      p.placed.ids = std::move(prompt);
      p.placed.mask.assign(p.placed.ids.size(), 0);
      for (int32_t id : p.placed.ids) p.keys.push_back(runtime::token_key(id));
      return p;
    }
    std::vector<int64_t> counts;
    std::vector<std::string> hashes;
    const int32_t image_token = req.videos.empty() ? media_counts(req, counts, hashes)
                                                   : video_counts(req, p, counts, hashes);
    if (!req.audios.empty()) p.audios = &req.audios;
    // Models with markup around each image's rows expand (or refuse) the prompt themselves.
    if (!req.images.empty()) {
      if (auto expanded = multimodal->expand_image_placeholders(prompt, req.images))
        prompt = std::move(*expanded);
    }
    const bool has_placeholder = std::count(prompt.begin(), prompt.end(), image_token) > 0;
    if (!counts.empty() && !has_placeholder) {
      // The image goes first, as LLaVA's processor convention puts it: after BOS (audio too).
      const auto at =
          prompt.begin() + (!prompt.empty() && tokenizer && prompt.front() == tokenizer->bos_id());
      prompt.insert(at, counts.size(), image_token);
    }
    p.placed = runtime::expand_image_tokens(prompt, image_token, counts);
    p.keys = runtime::position_keys(p.placed, hashes);
    if (req.audios.empty()) {
      p.positions = multimodal->mrope_positions(
          p.placed.ids, req.images,
          p.videos ? std::span(*p.videos) : std::span<const models::VideoFeatures>());
    }
    return p;
  }

  // media_counts for videos: each one encoded now (its grid fixes the token count and the
  // positions), its hash tagged so that it never equals an image's or an audio's.
  int32_t video_counts(const GenerateRequest& req, PreparedPrompt& p, std::vector<int64_t>& counts,
                       std::vector<std::string>& hashes) {
    AF_CHECK(multimodal->video_token_id() >= 0, ErrorCode::kUnsupported, kComponent, "this model (",
             multimodal->info().architecture, ") takes no video");
    AF_CHECK(req.images.empty() && req.audios.empty(), ErrorCode::kUnsupported, kComponent,
             "a prompt takes one kind of media: videos, images or audio");
    auto videos = std::make_shared<std::vector<models::VideoFeatures>>();
    for (const modalities::Video& video : req.videos) {
      // Sizes first: a video the context cannot hold is refused before it is encoded.
      const int64_t n = multimodal->num_video_tokens(video);
      AF_CHECK(n < context, ErrorCode::kOutOfRange, kComponent, "a video of ",
               video.frames().size(), " frames needs ", n, " tokens; the context holds ", context,
               " (sample fewer frames)");
      videos->push_back(multimodal->encode_video(video));
      counts.push_back(videos->back().features.n_tokens);
      hashes.push_back("video:" + video.hash());
    }
    p.videos = std::move(videos);
    return multimodal->video_token_id();
  }

  // The placeholder token of the request's media (images, or audio), each one's token count
  // and content hash. Audio hashes are tagged so they never equal an image's.
  int32_t media_counts(const GenerateRequest& req, std::vector<int64_t>& counts,
                       std::vector<std::string>& hashes) {
    if (req.audios.empty()) {
      AF_CHECK(req.images.empty() || multimodal->image_token_id() >= 0, ErrorCode::kUnsupported,
               kComponent, "this model (", multimodal->info().architecture, ") takes no images");
      for (const modalities::Image& image : req.images) {
        counts.push_back(multimodal->image_encoder().num_image_tokens(image));
        hashes.push_back(image.hash());
      }
      return multimodal->image_token_id();
    }
    AF_CHECK(multimodal->audio_encoder() != nullptr, ErrorCode::kUnsupported, kComponent,
             "this model (", multimodal->info().architecture, ") takes no audio");
    AF_CHECK(req.images.empty(), ErrorCode::kUnsupported, kComponent,
             "a prompt takes images or audio, not both");
    for (const modalities::Audio& audio : req.audios) {
      counts.push_back(multimodal->audio_encoder()->num_audio_tokens(audio));
      hashes.push_back("audio:" + audio.hash());
    }
    return multimodal->audio_token_id();
  }

  // Runs positions [from, to) of a prepared prompt; image rows come from the encoder cache (the
  // encoder runs only for images with rows in that range and not in `features` or the cache).
  // `features` ([p.images->size()]) keeps the images fetched so far across chunks.
  std::vector<float> prefill(const PreparedPrompt& p, size_t from, size_t to,
                             std::vector<std::shared_ptr<const models::ImageFeatures>>& features) {
    const std::span<const int32_t> ids = std::span(p.placed.ids).subspan(from, to - from);
    std::vector<float> logits;
    if (!multimodal) {
      logits = model->forward_step(ids);
    } else {
      const std::span<const uint8_t> mask = std::span(p.placed.mask).subspan(from, to - from);
      const auto rows_before = [&p](size_t end) {
        return static_cast<size_t>(std::count(
            p.placed.mask.begin(), p.placed.mask.begin() + static_cast<std::ptrdiff_t>(end), 1));
      };
      std::vector<float> rows;
      features.resize(p.media_count());
      for (size_t r = rows_before(from), end = rows_before(to); r < end; ++r) {
        const auto image = static_cast<size_t>(p.placed.image_of[r]);
        if (!features[image]) features[image] = image_features(p, image);
        const auto hidden = static_cast<size_t>(features[image]->hidden);
        const float* row =
            features[image]->rows.data() + static_cast<size_t>(p.placed.row_of[r]) * hidden;
        rows.insert(rows.end(), row, row + hidden);
      }
      const std::vector<int32_t> positions = p.positions_of(from, to);
      logits = multimodal->forward_embeds(ids, false, {mask, rows, positions});
    }
    cached.insert(cached.end(), ids.begin(), ids.end());
    keys.insert(keys.end(), p.keys.begin() + static_cast<std::ptrdiff_t>(from),
                p.keys.begin() + static_cast<std::ptrdiff_t>(to));
    return logits;
  }

  std::shared_ptr<const models::ImageFeatures> image_features(const PreparedPrompt& p,
                                                              size_t image) {
    if (p.audios) return audio_features(p, image);
    if (p.videos) return {p.videos, &(*p.videos)[image].features};  // shares the encoding
    models::ImageEncoder& encoder = multimodal->image_encoder();
    const modalities::Image& picture = (*p.images)[image];
    auto features = encoder_cache.get(encoder, picture);
    const int64_t want = encoder.num_image_tokens(picture);
    AF_CHECK(features->n_tokens == want && features->hidden == model->config().hidden_size &&
                 features->rows.size() == static_cast<size_t>(want * features->hidden),
             ErrorCode::kInternal, kComponent, "image ", image, ": the encoder returned ",
             features->n_tokens, " rows of ", features->hidden, " for ", want, " placeholders of ",
             model->config().hidden_size);
    return features;
  }

  std::shared_ptr<const models::AudioFeatures> audio_features(const PreparedPrompt& p,
                                                              size_t index) {
    models::AudioEncoder& encoder = *multimodal->audio_encoder();
    const modalities::Audio& audio = (*p.audios)[index];
    auto features = encoder_cache.get(encoder, audio);
    const int64_t want = encoder.num_audio_tokens(audio);
    AF_CHECK(features->n_tokens == want && features->hidden == model->config().hidden_size &&
                 features->rows.size() == static_cast<size_t>(want * features->hidden),
             ErrorCode::kInternal, kComponent, "audio ", index, ": the encoder returned ",
             features->n_tokens, " rows of ", features->hidden, " for ", want, " placeholders of ",
             model->config().hidden_size);
    return features;
  }
};

Session::Session(std::unique_ptr<State> state) : s_(std::move(state)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

Model& Session::model() { return *s_->model; }
const tok::Tokenizer* Session::tokenizer() const { return s_->tokenizer.get(); }
int64_t Session::context_length() const { return s_->context; }
const std::vector<int32_t>& Session::cached_ids() const { return s_->cached; }
uint64_t Session::encoder_calls() const { return s_->encoder_cache.encoder_calls(); }
const std::vector<ChatMessage>& Session::history() const { return s_->history; }
void Session::cancel() { s_->cancel.store(true); }
void Session::set_system_prompt(std::string system) { s_->system = std::move(system); }

void Session::reset() {
  s_->history.clear();
  s_->cached.clear();
  s_->keys.clear();
  s_->model->reset_state();
}

size_t Session::drop_oldest_turns(size_t turns) {
  const size_t n = std::min(s_->history.size(), 2 * turns);
  s_->history.erase(s_->history.begin(), s_->history.begin() + static_cast<ptrdiff_t>(n));
  return n / 2;
}

namespace {

// Runs positions `from`.. of `p`; with a progress callback, in chunks so it can be told.
std::vector<float> prefill(Session::State& s, const PreparedPrompt& p, size_t from,
                           const std::function<void(int64_t, int64_t)>& progress) {
  const size_t end = p.placed.ids.size();
  std::vector<std::shared_ptr<const models::ImageFeatures>> features;
  const auto total = static_cast<int64_t>(end - from);
  const int64_t chunk = GenerateRequest::kPrefillProgressChunk;
  if (!progress || total <= chunk) return s.prefill(p, from, end, features);
  std::vector<float> logits;
  for (int64_t done = 0; done < total; done += chunk) {
    const int64_t next = std::min(done + chunk, total);
    logits =
        s.prefill(p, from + static_cast<size_t>(done), from + static_cast<size_t>(next), features);
    progress(next, total);
  }
  return logits;
}

}  // namespace

GenerateResponse Session::generate(const GenerateRequest& req) {
  State& s = *s_;
  s.cancel.store(false);
  AF_CHECK(req.max_tokens >= 1, ErrorCode::kInvalidArgument, kComponent,
           "max_tokens must be at least 1, got ", req.max_tokens);
  std::vector<int32_t> prompt = req.prompt_ids;
  if (prompt.empty()) {
    AF_CHECK(!req.prompt.empty(), ErrorCode::kInvalidArgument, kComponent,
             "the prompt is empty (give text or prompt ids)");
    AF_CHECK(s.tokenizer != nullptr, ErrorCode::kInvalidArgument, kComponent,
             "a text prompt needs a tokenizer: this session has none (give prompt_ids, or "
             "SessionBuilder::tokenizer)");
    try {
      // cancel() from another thread also stops a long tokenization.
      // The model's image tags become its image token before tokenization.
      const std::string text = s.multimodal && !req.images.empty()
                                   ? s.multimodal->image_prompt_text(req.prompt)
                                   : req.prompt;
      prompt = s.tokenizer->encode(text, req.add_special, /*parse_special=*/true,
                                   [&s] { return s.cancel.load(); });
    } catch (const tok::Cancelled&) {
      GenerateResponse cancelled;
      cancelled.finish_reason = FinishReason::kCancelled;
      return cancelled;
    }
    AF_CHECK(!prompt.empty(), ErrorCode::kInvalidArgument, kComponent,
             "the prompt tokenizes to no ids");
  }
  runtime::check_prompt_ids(prompt, s.tokenizer.get(), s.model->config().vocab_size, kComponent);
  const PreparedPrompt prepared = s.prepare(std::move(prompt), req);
  const std::vector<int32_t>& ids = prepared.placed.ids;
  const auto n_prompt = static_cast<int64_t>(ids.size());
  const auto n_image = static_cast<int64_t>(prepared.placed.image_of.size());
  const std::string image_rows =
      n_image > 0 ? " (" + std::to_string(n_image) + " of them image rows)" : std::string();
  AF_CHECK(n_prompt < s.context, ErrorCode::kOutOfRange, kComponent, "the prompt has ", n_prompt,
           " tokens", image_rows, "; the context holds ", s.context,
           " (at least one more is needed to generate)");
  ops::Sampler sampler(req.sampling);
  sampler.set_masked_ids(s.masked);  // ids without text are never generated
  runtime::StopStringFilter stops(req.stop);

  GenerateResponse res;
  res.prompt_tokens = n_prompt;
  // Reuse the longest common prefix of what the model holds.
  // Keys, not ids: image rows match only rows of the same image content.
  size_t common = 0;
  const std::vector<uint64_t>& keys = prepared.keys;
  while (common < s.keys.size() && common < keys.size() && s.keys[common] == keys[common]) ++common;
  if (s.causal) {
    if (common == ids.size()) --common;  // the last prompt id must run to give logits
    s.causal->truncate(static_cast<int64_t>(common));
    // A sliding-window model's ring may keep fewer (models/decoder_lm.cpp, DecoderSequence).
    common = std::min(common, static_cast<size_t>(s.causal->n_past()));
    s.cached.resize(common);
    s.keys.resize(common);
  } else if (common < s.cached.size() || common == ids.size()) {
    s.model->reset_state();  // a plain Model can only append
    s.cached.clear();
    s.keys.clear();
    common = 0;
  }
  res.cached_tokens = static_cast<int64_t>(common);
  res.prefill_tokens = n_prompt - res.cached_tokens;

  const auto t0 = Clock::now();
  std::vector<float> logits = prefill(s, prepared, common, req.on_prefill);
  res.timings.prefill_ms = ms_since(t0);

  std::optional<tok::StreamDecoder> decoder;
  bool text_started = false;  // the prompt decoded to text (JSON tokens continue it)
  if (s.tokenizer) {
    // The prompt goes through the decoder first (its text is dropped), so the generated text is
    // exactly what decoding prompt + generation adds, as transformers' TextStreamer shows it: a
    // continuation keeps its leading space, text right after BOS loses the SentencePiece one.
    decoder.emplace(*s.tokenizer, /*skip_special=*/true);
    for (int32_t id : ids) text_started = !decoder->push(id).empty() || text_started;
  }
  std::optional<runtime::JsonConstraint> json;
  if (req.json_schema) {
    AF_CHECK(s.tokenizer, ErrorCode::kInvalidArgument, kComponent,
             "json_schema needs the session's tokenizer");
    if (!s.vocab_index) {
      s.vocab_index = runtime::make_vocab_index(*s.tokenizer, s.model->config().vocab_size);
    }
    json.emplace(req.json_schema, *s.tokenizer, s.vocab_index,
                 std::vector<int32_t>(s.eos.begin(), s.eos.end()), text_started);
  }
  std::vector<int32_t> history = ids;  // what penalties look at
  const auto t_decode = Clock::now();
  for (;;) {
    AF_CHECK(!json || json->mask(logits), ErrorCode::kInvalidArgument, kComponent,
             "no token of the vocabulary continues the JSON document");
    const ops::SampledToken sampled = sampler.sample(logits, history);
    const int32_t id = sampled.id;
    if (res.ids.empty()) res.timings.time_to_first_token_ms = ms_since(t0);
    res.ids.push_back(id);
    history.push_back(id);
    if (req.logprobs) res.tokens.push_back(sampled);

    const bool is_eos = (!req.ignore_eos || json) && s.eos.count(id) > 0;
    std::string text;
    if (decoder && !is_eos) text = stops.push(decoder->push(id));
    if (json && !is_eos) json->accept(id);
    std::optional<FinishReason> finish;
    if (is_eos || stops.matched() || (json && json->closed())) {
      finish = FinishReason::kStop;
    } else if (static_cast<int64_t>(res.ids.size()) >= req.max_tokens) {
      finish = FinishReason::kLength;
    } else if (static_cast<int64_t>(s.cached.size()) >= s.context) {
      finish = FinishReason::kContextFull;
    }
    // Text held back for a possible stop string or an unfinished character is final now.
    if (finish && !stops.matched() && decoder) {
      text += stops.push(decoder->flush());
      if (!stops.matched()) text += stops.flush();
    }
    res.text += text;
    if (req.on_token) {
      const TokenEvent event{id, text, &sampled};
      if (!req.on_token(event) && !finish) finish = FinishReason::kCancelled;
    }
    if (!finish && s.cancel.load()) finish = FinishReason::kCancelled;
    if (finish) {
      if (*finish == FinishReason::kCancelled && decoder) {
        // What was held back is shown too, so the streamed text equals res.text.
        std::string rest = stops.push(decoder->flush());
        if (!stops.matched()) rest += stops.flush();
        if (!rest.empty()) {
          res.text += rest;
          if (req.on_token) req.on_token(TokenEvent{-1, rest, nullptr});
        }
      }
      res.finish_reason = *finish;
      res.stop_string = stops.matched_string();
      break;
    }
    logits = s.feed(std::span(&id, 1));
  }
  res.timings.decode_ms = ms_since(t_decode);
  if (res.timings.prefill_ms > 0)
    res.timings.prompt_tokens_per_s =
        1e3 * static_cast<double>(res.prefill_tokens) / res.timings.prefill_ms;
  const double decode_steps = static_cast<double>(res.ids.size()) - 1;
  if (decode_steps > 0 && res.timings.decode_ms > 0)
    res.timings.generated_tokens_per_s = 1e3 * decode_steps / res.timings.decode_ms;
  return res;
}

std::string Session::render_chat(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  AF_CHECK(s_->chat.has_value(), ErrorCode::kInvalidArgument, "chat",
           "this model has no chat template (give one with SessionBuilder::chat_template)");
  return s_->chat->render(messages, add_generation_prompt);
}

std::optional<std::vector<int32_t>> Session::encode_chat_prompt(
    const std::vector<ChatMessage>& messages) {
  State& s = *s_;
  AF_CHECK(s.tokenizer != nullptr, ErrorCode::kInvalidArgument, "chat", "chat needs a tokenizer");
  AF_CHECK(s.chat.has_value(), ErrorCode::kInvalidArgument, "chat",
           "this model has no chat template (give one with SessionBuilder::chat_template)");
  // Models whose template takes no image parts get their images as text (MiniCPM-V).
  const std::string image_text = s.multimodal ? s.multimodal->chat_image_text() : std::string();
  std::vector<ChatMessage> as_text;
  if (!image_text.empty()) as_text = runtime::images_as_text(messages, image_text);
  const std::vector<ChatMessage>& shown = image_text.empty() ? messages : as_text;
  const runtime::RenderedChat prompt =
      s.chat->render_located(shown, /*add_generation_prompt=*/true);
  // As transformers' apply_chat_template: the template writes BOS itself. cancel() from another
  // thread also stops a long tokenization.
  s.cancel.store(false);
  try {
    return runtime::encode_chat(
        *s.tokenizer, prompt, shown, /*add_special=*/false, s.parse_special_in_content,
        [&s] { return s.cancel.load(); }, image_text);
  } catch (const tok::Cancelled&) {
    return std::nullopt;
  }
}

namespace {

// Every image of a conversation, in prompt order (earlier turns' come from the caches).
std::vector<modalities::Image> images_of(const std::vector<ChatMessage>& messages) {
  std::vector<modalities::Image> images;
  for (const ChatMessage& m : messages)
    images.insert(images.end(), m.images.begin(), m.images.end());
  return images;
}

// Every audio of a conversation, in prompt order.
std::vector<modalities::Audio> audios_of(const std::vector<ChatMessage>& messages) {
  std::vector<modalities::Audio> audios;
  for (const ChatMessage& m : messages)
    audios.insert(audios.end(), m.audios.begin(), m.audios.end());
  return audios;
}

GenerateResponse cancelled_response() {
  GenerateResponse cancelled;
  cancelled.finish_reason = FinishReason::kCancelled;
  return cancelled;
}

}  // namespace

GenerateResponse Session::chat_completion(const std::vector<ChatMessage>& messages,
                                          GenerateRequest request) {
  AF_CHECK(request.videos.empty(), ErrorCode::kUnsupported, "chat",
           "videos go through generate(), not chat messages (not supported yet)");
  std::vector<modalities::Image> images = images_of(messages);
  std::vector<modalities::Audio> audios = audios_of(messages);
  AF_CHECK(images.empty() || s_->multimodal, ErrorCode::kUnsupported, "chat",
           "this model takes no images (it is a text-only model)");
  AF_CHECK(audios.empty() || s_->multimodal, ErrorCode::kUnsupported, "chat",
           "this model takes no audio (it is a text-only model)");
  std::optional<std::vector<int32_t>> ids = encode_chat_prompt(messages);
  if (!ids) return cancelled_response();
  request.prompt_ids = std::move(*ids);
  request.prompt.clear();
  request.images = std::move(images);
  request.audios = std::move(audios);
  return generate(request);
}

GenerateResponse Session::chat(const std::string& user, GenerateRequest request) {
  State& s = *s_;
  AF_CHECK(request.videos.empty(), ErrorCode::kUnsupported, "chat",
           "videos go through generate(), not chat turns (not supported yet)");
  AF_CHECK(request.images.empty() || s.multimodal, ErrorCode::kUnsupported, "chat",
           "this model takes no images (it is a text-only model)");
  AF_CHECK(request.audios.empty() || s.multimodal, ErrorCode::kUnsupported, "chat",
           "this model takes no audio (it is a text-only model)");
  std::vector<ChatMessage> messages;
  if (!s.system.empty()) messages.push_back({"system", s.system});
  messages.insert(messages.end(), s.history.begin(), s.history.end());
  messages.push_back({"user", user, request.images, {}, request.audios});
  std::optional<std::vector<int32_t>> ids = encode_chat_prompt(messages);
  if (!ids) return cancelled_response();  // cancelled while tokenizing: the turn did not happen
  request.prompt_ids = std::move(*ids);
  request.prompt.clear();
  std::vector<modalities::Image> turn_images = std::move(request.images);
  std::vector<modalities::Audio> turn_audios = std::move(request.audios);
  request.images = images_of(messages);
  request.audios = audios_of(messages);
  GenerateResponse res = generate(request);
  s.history.push_back({"user", user, std::move(turn_images), {}, std::move(turn_audios)});
  s.history.push_back({"assistant", res.text});
  return res;
}

std::vector<float> Session::logits(std::span<const int32_t> ids) {
  State& s = *s_;
  constexpr char kLogits[] = "logits";
  AF_CHECK(s.causal != nullptr, ErrorCode::kUnsupported, kLogits,
           "logits() of every position needs a built-in model (af::models::CausalLM)");
  AF_CHECK(!ids.empty(), ErrorCode::kInvalidArgument, kLogits, "logits() needs at least one id");
  runtime::check_prompt_ids(ids, s.tokenizer.get(), s.model->config().vocab_size, kLogits);
  AF_CHECK(static_cast<int64_t>(ids.size()) <= s.context, ErrorCode::kOutOfRange, kLogits,
           ids.size(), " ids do not fit the context of ", s.context, " tokens");
  // A fresh sequence: every position's logits are computed, so no cached prefix is reused.
  s.causal->truncate(0);
  s.cached.clear();
  std::vector<float> out = s.causal->forward(ids, /*all_logits=*/true);
  s.cached.assign(ids.begin(), ids.end());
  return out;
}

SessionBuilder& SessionBuilder::tokenizer(std::shared_ptr<const tok::Tokenizer> tokenizer) {
  tokenizer_ = std::move(tokenizer);
  return *this;
}
SessionBuilder& SessionBuilder::tokenizer_path(std::string path) {
  tokenizer_path_ = std::move(path);
  return *this;
}
SessionBuilder& SessionBuilder::chat_template(std::string source) {
  chat_template_ = std::move(source);
  return *this;
}
SessionBuilder& SessionBuilder::template_limits(const tok::TemplateLimits& limits) {
  template_limits_ = limits;
  return *this;
}
SessionBuilder& SessionBuilder::eos_ids(std::vector<int32_t> ids) {
  eos_ids_ = std::move(ids);
  return *this;
}
SessionBuilder& SessionBuilder::system_prompt(std::string system) {
  system_ = std::move(system);
  return *this;
}
SessionBuilder& SessionBuilder::encoder_cache_mb(uint64_t mb) {
  encoder_cache_mb_ = mb;
  return *this;
}
SessionBuilder& SessionBuilder::parse_special_in_content(bool parse) {
  parse_special_in_content_ = parse;
  return *this;
}

Session SessionBuilder::build(std::unique_ptr<Model> model) const {
  AF_CHECK(model != nullptr, ErrorCode::kInvalidArgument, "session", "no model given");
  auto s = std::make_unique<Session::State>();
  s->model = std::move(model);
  s->causal = dynamic_cast<models::CausalLM*>(s->model.get());
  const ModelConfig config = s->model->config();
  AF_CHECK(config.vocab_size > 0, ErrorCode::kInvalidArgument, "session",
           "the model's config() reports vocab_size ", config.vocab_size);
  s->context = s->causal ? s->causal->info().context_length : config.max_position_embeddings;
  AF_CHECK(s->context > 0, ErrorCode::kInvalidArgument, "session",
           "the model's config() reports max_position_embeddings ", s->context,
           " (the context length must be positive)");

  const std::string model_path = s->causal ? s->causal->info().path : std::string();
  s->tokenizer = tokenizer_;
  if (!s->tokenizer && (tokenizer_path_ || !model_path.empty())) {
    s->tokenizer = tok::Tokenizer::load(tokenizer_path_ ? *tokenizer_path_ : model_path);
  }
  if (eos_ids_) {
    s->eos.insert(eos_ids_->begin(), eos_ids_->end());
  } else if (s->causal) {
    for (int32_t id : runtime::default_end_tokens(*s->causal, s->tokenizer.get()))
      s->eos.insert(id);
  } else if (s->tokenizer && s->tokenizer->eos_id() >= 0) {
    s->eos.insert(s->tokenizer->eos_id());
  }
  if (s->tokenizer) {
    std::optional<std::string> source = chat_template_;
    if (!source && !model_path.empty()) source = runtime::find_model_chat_template(model_path);
    if (source) s->chat.emplace(*source, *s->tokenizer, template_limits_);
  }
  if (system_) s->system = *system_;
  if (s->tokenizer) s->masked = runtime::unassigned_ids(*s->tokenizer, config.vocab_size);
  s->parse_special_in_content = parse_special_in_content_;
  s->multimodal = dynamic_cast<models::MultimodalLM*>(s->model.get());
  s->encoder_cache.set_max_bytes(encoder_cache_mb_ << 20);
  return Session(std::move(s));
}

}  // namespace af
