#include "server.hpp"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <httplib.h>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/multimodal.hpp"
#include "af/models/whisper.hpp"
#include "af/runtime/prompt.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "api.hpp"
#include "audio_api.hpp"
#include "build_info.hpp"
#include "chat_prompt.hpp"
#include "client_watch.hpp"
#include "embeddings.hpp"
#include "extras.hpp"
#include "http_front.hpp"
#include "metrics.hpp"
#include "runtime/end_tokens.hpp"
#include "structured.hpp"
#include "tool_calls.hpp"
#include "web_ui.hpp"

namespace af::server {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// How often a non-streaming request's thread looks at its client's connection while it waits.
constexpr auto kClientPoll = std::chrono::milliseconds(100);

std::string dump(const json& j) {
  // Token pieces may be partial UTF-8; replace rather than throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --chat-template FILE: a Jinja template, at most 1 MiB (real ones are a few KiB).
std::string read_template_file(const std::string& path) {
  constexpr std::uintmax_t kMaxTemplateBytes = 1 << 20;
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  AF_CHECK(!ec, ErrorCode::kIo, "server", "--chat-template ", path, ": ", ec.message());
  AF_CHECK(size <= kMaxTemplateBytes, ErrorCode::kInvalidArgument, "server", "--chat-template ",
           path, ": ", size, " bytes, more than a chat template's limit of ", kMaxTemplateBytes);
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  AF_CHECK(in.good() || in.eof(), ErrorCode::kIo, "server", "--chat-template ", path,
           ": read failed");
  return text;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

// httplib calls content providers on its worker threads without a handler, so an exception
// there would end the process: it becomes an SSE error event and the stream ends (false makes
// the release callback cancel the request's generations).
template <class Provider>
auto guarded_provider(Provider provider) {
  return [provider](size_t offset, httplib::DataSink& sink) {
    try {
      return provider(offset, sink);
    } catch (const std::exception& e) {
      try {
        const std::string event =
            "data: " + dump(error_body(ApiError(500, e.what(), "server_error"))) + "\n\n";
        sink.write(event.data(), event.size());
      } catch (...) {
      }
      return false;
    }
  };
}

// Debian's cpp-httplib 0.11 listens with a backlog of 5, so a burst of clients connecting at
// once overflows the accept queue and the kernel may reset some of them before af-server can
// answer 503. Linux lets listen() on a listening socket set a new backlog; find the socket by
// its port.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 1024; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) {
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    }
    if (bound == port) listen(fd, SOMAXCONN);
  }
}

// Everything one HTTP request's choices produce, handed from the scheduler thread to the HTTP
// thread that answers.
struct Exchange {
  struct Event {
    int choice = 0;
    std::string text;
    std::optional<runtime::GeneratedToken> token;
    std::optional<runtime::RequestResult> done;
  };

  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Event> events;  // streaming only
  std::vector<std::optional<runtime::RequestResult>> results;
  int finished = 0;
  std::vector<uint64_t> ids;  // scheduler ids, for cancellation

  void push(Event e) {
    {
      std::lock_guard lock(mutex);
      if (e.done) {
        results[e.choice] = *e.done;
        finished += 1;
      }
      events.push_back(std::move(e));
    }
    changed.notify_all();
  }
};

// The fields every response (or chunk) of one request repeats.
struct ResponseHead {
  std::string id;
  std::string model;
  int64_t created = 0;
  bool chat = false;
};

// Waits until every choice of a non-streaming request is done, looking at the client's
// connection (fd; -1: unknown) meanwhile. Returns kOpen when the results are in, else how the
// client's connection changed (they are not all in yet).
PeerState await_results(Exchange& exchange, int n_choices, int fd) {
  std::unique_lock lock(exchange.mutex);
  while (!exchange.changed.wait_for(lock, kClientPoll,
                                    [&] { return exchange.finished == n_choices; })) {
    if (fd < 0) continue;
    const PeerState state = peer_state(fd);
    if (state != PeerState::kOpen) return state;
  }
  return PeerState::kOpen;
}

class Server {
 public:
  explicit Server(const ServerOptions& options) : options_(options) {}

  int run();

 private:
  void handle_generate(Endpoint endpoint, const httplib::Request& req, const std::string& body,
                       httplib::Response& res);
  json completion_body(const ApiRequest& r, const ResponseHead& head, const Exchange& exchange,
                       const std::vector<int64_t>& prompt_tokens) const;
  void respond_when_ready(httplib::Response& res, std::shared_ptr<Exchange> exchange,
                          std::function<json()> body);
  void cancel(const Exchange& exchange);
  bool wait_answered(Clock::time_point deadline, bool generations_only);
  void shut_reading();
  json token_logprobs_chat(const runtime::GeneratedToken& t) const;
  json usage(const ApiRequest& r, const std::vector<int64_t>& prompt_tokens,
             const std::vector<std::optional<runtime::RequestResult>>& results) const;
  void watch_signals(httplib::Server& http);
  // The images of the chat messages' image_url parts, decoded (ApiError 400 when bad).
  std::vector<modalities::Image> chat_images(const ApiRequest& r) const;
  // The model's MultimodalLM::chat_image_text (MiniCPM-V's image token; "" for others).
  std::string chat_image_text() const {
    const auto* mm = dynamic_cast<const models::MultimodalLM*>(model_.get());
    return mm ? mm->chat_image_text() : std::string();
  }
  // A chat prompt's placeholders expanded for `images` (ApiError 400 when they do not match).
  std::vector<int32_t> place_images(const std::vector<int32_t>& ids,
                                    const std::vector<modalities::Image>& images) const;
  // The audio of the chat messages' input_audio parts, decoded (ApiError 400 / 413 when bad).
  std::vector<modalities::Audio> chat_audios(const ApiRequest& r) const;
  // The request's video_url parts, decoded and sampled (400/413 for bad ones); a model that
  // takes no images is refused before decoding.
  std::vector<modalities::Video> chat_videos(const ApiRequest& r) const;
  // A chat prompt's audio placeholders expanded for `audios` (ApiError 400 when they differ).
  std::vector<int32_t> place_audios(const std::vector<int32_t>& ids,
                                    const std::vector<modalities::Audio>& audios) const;

  ServerOptions options_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::unique_ptr<models::CausalLM> model_;
  std::unique_ptr<runtime::Scheduler> scheduler_;
  std::unique_ptr<AudioApi> audio_;  // with --whisper-model, or a Whisper model as -m
  bool speech_only_ = false;         // -m is a Whisper model: only the audio endpoints answer
  std::unique_ptr<ChatPrompt> chat_prompt_;
  std::optional<std::string> chat_template_source_;  // nullopt: ChatML
  // CORS (--cors-origin): headers for allowed origins; answers preflights (true: answered).
  bool answer_cors(const httplib::Request& req, httplib::Response& res) const;
  // /v1/embeddings (embeddings.hpp); with an encoder model the above three stay null.
  std::unique_ptr<EmbeddingService> embeddings_;
  std::string model_id_;
  int64_t created_ = unix_time();
  std::atomic<bool> shutting_down_{false};
  // shutting_down_ turns true under this lock, so no request is submitted after the signal
  // thread has seen it turn.
  std::mutex admission_mutex_;
  // Requests being answered, which shutdown waits for: generation requests from their
  // admission, and every request while its response is written (post-routing handler), until
  // the logger, which cpp-httplib calls once the response is written or failed. Keyed by the
  // Request, which lives until then.
  std::mutex answering_mutex_;
  std::condition_variable answered_;
  std::set<const httplib::Request*> generating_;
  std::set<const httplib::Request*> writing_;
  bool reading_shut_ = false;  // shut_reading ran: responses not begun by then cannot be sent
  std::atomic<uint64_t> next_request_{1};
  Metrics metrics_;
  // Access log: when each request arrived, and the token counts of generations, by request.
  struct AccessPending {
    Clock::time_point start;
    std::weak_ptr<Exchange> exchange;
    int64_t prompt_tokens = -1;
    std::string prompt;
  };
  std::unique_ptr<AccessLog> access_log_;
  std::mutex access_mutex_;
  std::map<const httplib::Request*, AccessPending> access_pending_;
  void log_access(const httplib::Request& req, const httplib::Response& res);
};

json Server::token_logprobs_chat(const runtime::GeneratedToken& t) const {
  auto entry = [&](int32_t id, float logprob) {
    const std::string bytes = tokenizer_->token_bytes(id, false);
    json b = json::array();
    for (unsigned char c : bytes) b.push_back(c);
    return json{{"token", bytes}, {"logprob", logprob}, {"bytes", b}};
  };
  json e = entry(t.id, t.logprob);
  json top = json::array();
  for (const auto& alt : t.top) top.push_back(entry(alt.id, alt.logprob));
  e["top_logprobs"] = top;
  return e;
}

json Server::usage(const ApiRequest& r, const std::vector<int64_t>& prompt_tokens,
                   const std::vector<std::optional<runtime::RequestResult>>& results) const {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (int64_t p : prompt_tokens) prompt += p;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i]) continue;
    completion += static_cast<int64_t>(results[i]->tokens.size());
    if (i % r.n == 0) cached += results[i]->cached_prompt_tokens;
  }
  return json{{"prompt_tokens", prompt},
              {"completion_tokens", completion},
              {"total_tokens", prompt + completion},
              {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

// The non-streaming answer once every choice is done; throws ApiError when one failed or was
// cancelled.
json Server::completion_body(const ApiRequest& r, const ResponseHead& head,
                             const Exchange& exchange,
                             const std::vector<int64_t>& prompt_tokens) const {
  json choices = json::array();
  for (int c = 0; c < static_cast<int>(exchange.results.size()); ++c) {
    const runtime::RequestResult& result = *exchange.results[c];
    if (result.cause == runtime::StopCause::kError) {
      throw ApiError(500, "Generation failed: " + result.error, "server_error");
    }
    if (result.cause == runtime::StopCause::kCancelled) {
      throw ApiError(503, "The request was cancelled because the server is shutting down.",
                     "server_error", "", "shutting_down");
    }
    json choice = {{"index", c}, {"finish_reason", runtime::finish_reason(result.cause)}};
    json logprobs = nullptr;
    if (head.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", result.text}, {"refusal", nullptr}};
      std::mt19937_64 ids(std::random_device{}());
      if (auto call =
              tool_call_message(r, detect_tool_syntax(chat_prompt_->source()), result.text, ids)) {
        choice["message"] = std::move(*call);
        choice["finish_reason"] = "tool_calls";
      }
      if (r.logprobs) {
        json content = json::array();
        for (const auto& t : result.tokens) content.push_back(token_logprobs_chat(t));
        logprobs = {{"content", content}, {"refusal", nullptr}};
      }
    } else {
      choice["text"] = result.text;
      if (r.logprobs) {
        json tokens = json::array(), lps = json::array(), tops = json::array(),
             offsets = json::array();
        size_t offset = 0;
        for (const auto& t : result.tokens) {
          const std::string piece = tokenizer_->token_bytes(t.id, false);
          tokens.push_back(piece);
          lps.push_back(t.logprob);
          json top = json::object();
          for (const auto& alt : t.top) top[tokenizer_->token_bytes(alt.id, false)] = alt.logprob;
          tops.push_back(top);
          offsets.push_back(offset);
          offset += piece.size();
        }
        logprobs = {{"tokens", tokens},
                    {"token_logprobs", lps},
                    {"top_logprobs", tops},
                    {"text_offset", offsets}};
      }
    }
    choice["logprobs"] = logprobs;
    choices.push_back(choice);
  }
  json body = {{"id", head.id},
               {"object", head.chat ? "chat.completion" : "text_completion"},
               {"created", head.created},
               {"model", head.model},
               {"system_fingerprint", "alloyforge"},
               {"choices", choices},
               {"usage", usage(r, prompt_tokens, exchange.results)}};
  return body;
}

// The client sent FIN while its answer is computed: it may have only half-closed its side (and
// still read), or be gone. Only a write tells them apart (a closed socket answers data with a
// reset), so the answer starts now: status 200, chunked, with a newline (whitespace JSON allows
// before a value) each second until the body is ready. A failed write cancels the generation.
// An error found later is then an error object under status 200, as in a stream.
void Server::respond_when_ready(httplib::Response& res, std::shared_ptr<Exchange> exchange,
                                std::function<json()> body) {
  const int n_choices = static_cast<int>(exchange->results.size());
  auto probed = std::make_shared<bool>(false);
  res.set_chunked_content_provider(
      "application/json",
      [exchange, n_choices, probed, body = std::move(body), response = &res](
          size_t, httplib::DataSink& sink) {
        bool ready;
        {
          std::unique_lock lock(exchange->mutex);
          ready = exchange->changed.wait_for(
              lock, *probed ? std::chrono::seconds(1) : std::chrono::seconds(0),
              [&] { return exchange->finished == n_choices; });
        }
        *probed = true;
        std::string out = "\n";
        if (ready) {
          try {
            out = dump(body());
          } catch (const ApiError& e) {
            out = dump(error_body(e));
          }
        }
        if (!sink.write(out.data(), out.size())) {
          response->status = 499;  // for the metrics, as below; the client is gone
          return false;
        }
        if (ready) sink.done();
        return true;
      },
      [exchange, this](bool success) {
        if (!success) cancel(*exchange);
      });
}

void Server::cancel(const Exchange& exchange) {
  for (uint64_t id : exchange.ids) scheduler_->cancel(id);
}

std::vector<modalities::Image> Server::chat_images(const ApiRequest& r) const {
  std::vector<modalities::Image> images;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const std::vector<std::string>& urls = r.messages[i].image_urls;
    for (size_t k = 0; k < urls.size(); ++k) {
      const std::string param = "messages[" + std::to_string(i) + "].content";
      if (!dynamic_cast<models::MultimodalLM*>(model_.get())) {
        throw ApiError(400, "This model does not accept images (it is a text-only model).",
                       "invalid_request_error", param, "unsupported_value");
      }
      images.push_back(load_image_url(urls[k], param, options_.image_urls));
    }
  }
  return images;
}

std::vector<int32_t> Server::place_images(const std::vector<int32_t>& ids,
                                          const std::vector<modalities::Image>& images) const {
  auto& model = dynamic_cast<models::MultimodalLM&>(*model_);
  std::vector<int64_t> counts;
  for (const modalities::Image& image : images)
    counts.push_back(model.image_encoder().num_image_tokens(image));
  try {
    if (auto expanded = model.expand_image_placeholders(ids, images))  // markup models (MiniCPM-V)
      return runtime::expand_image_tokens(*expanded, model.image_token_id(), counts).ids;
    return runtime::expand_image_tokens(ids, model.image_token_id(), counts).ids;
  } catch (const Error& e) {
    throw ApiError(400, std::string("The images do not match the prompt: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
}

std::vector<modalities::Video> Server::chat_videos(const ApiRequest& r) const {
  std::vector<modalities::Video> videos;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    for (const std::string& url : r.messages[i].video_urls) {
      const std::string param = "messages[" + std::to_string(i) + "].content";
      if (!dynamic_cast<models::MultimodalLM*>(model_.get())) {
        throw ApiError(400, "This model does not accept video (it is a text-only model).",
                       "invalid_request_error", param, "unsupported_value");
      }
      videos.push_back(load_video_url(url, param, options_.video_urls));
    }
  }
  return videos;
}

std::vector<modalities::Audio> Server::chat_audios(const ApiRequest& r) const {
  std::vector<modalities::Audio> audios;
  auto* model = dynamic_cast<models::MultimodalLM*>(model_.get());
  for (size_t i = 0; i < r.messages.size(); ++i) {
    for (const ChatMessage::InputAudio& part : r.messages[i].audios) {
      const std::string param = "messages[" + std::to_string(i) + "].content";
      if (!model || !model->audio_encoder()) {
        throw ApiError(400, "This model does not accept audio (it is not an audio-language model).",
                       "invalid_request_error", param, "unsupported_value");
      }
      audios.push_back(load_input_audio(part.data, part.format, param, options_.input_audio));
    }
  }
  return audios;
}

std::vector<int32_t> Server::place_audios(const std::vector<int32_t>& ids,
                                          const std::vector<modalities::Audio>& audios) const {
  auto& model = dynamic_cast<models::MultimodalLM&>(*model_);
  std::vector<int64_t> counts;
  try {
    for (const modalities::Audio& audio : audios)
      counts.push_back(model.audio_encoder()->num_audio_tokens(audio));
    return runtime::expand_image_tokens(ids, model.audio_token_id(), counts).ids;
  } catch (const Error& e) {
    throw ApiError(400, std::string("The audio does not match the prompt: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
}

void Server::handle_generate(Endpoint endpoint, const httplib::Request& req,
                             const std::string& body, httplib::Response& res) {
  if (shutting_down_) {
    res.set_header("Retry-After", "5");
    throw ApiError(503, "The server is shutting down.", "server_error", "", "shutting_down");
  }
  if (speech_only_) {
    throw ApiError(400,
                   "The model '" + model_id_ +
                       "' is a speech-recognition model: use /v1/audio/transcriptions or "
                       "/v1/audio/translations.",
                   "invalid_request_error", "model", "model_not_supported");
  }
  if (!scheduler_) {
    throw ApiError(400, "This server runs an embedding model: use /v1/embeddings.",
                   "invalid_request_error", "model", "model_not_supported");
  }
  const ApiRequest r = parse_request(endpoint, body);
  const ToolSyntax tool_syntax = detect_tool_syntax(chat_prompt_->source());
  // A forced tool call (tool_choice required / named) overrides response_format.
  auto grammar = tool_choice_grammar(r, tool_syntax);
  if (!grammar) grammar = response_grammar(r);  // response_format json_schema, or nullptr
  const bool chat = endpoint == Endpoint::kChatCompletions;
  const int64_t context = scheduler_->slot_context();
  const std::vector<modalities::Image> images =
      chat ? chat_images(r) : std::vector<modalities::Image>();
  const std::vector<modalities::Audio> audios =
      chat ? chat_audios(r) : std::vector<modalities::Audio>();
  if (!images.empty() && !audios.empty()) {
    throw ApiError(400, "A request takes images or audio, not both.", "invalid_request_error",
                   "messages", "invalid_value");
  }
  // Videos are decoded and checked here; the vision models loaded today (LLaVA) take none.
  if (!(chat ? chat_videos(r) : std::vector<modalities::Video>()).empty()) {
    throw ApiError(400, "This model does not accept video (no video-language model is loaded).",
                   "invalid_request_error", "messages", "unsupported_value");
  }

  // Prompts as ids. A long tokenization stops when the server shuts down (httplib 0.11 cannot
  // tell the handler that its client went away).
  auto encode = [this](const std::string& text, bool add_special) {
    try {
      return tokenizer_->encode(text, add_special, /*parse_special=*/true,
                                [this] { return shutting_down_.load(); });
    } catch (const tok::Cancelled&) {
      throw ApiError(503, "The request was cancelled because the server is shutting down.",
                     "server_error", "", "shutting_down");
    }
  };
  std::vector<std::vector<int32_t>> prompts = r.prompt_ids;
  if (chat) {
    try {
      prompts.push_back(chat_prompt_->encode(
          r.messages, *tokenizer_, options_.parse_special_in_content,
          [this] { return shutting_down_.load(); },
          r.tool_choice == "none" ? nlohmann::json(nullptr) : r.tools, chat_image_text()));
      if (!images.empty()) prompts.back() = place_images(prompts.back(), images);
      if (!audios.empty()) prompts.back() = place_audios(prompts.back(), audios);
    } catch (const tok::Cancelled&) {
      throw ApiError(503, "The request was cancelled because the server is shutting down.",
                     "server_error", "", "shutting_down");
    }
  } else {
    for (const std::string& text : r.prompt_texts) {
      prompts.push_back(encode(text, /*add_special=*/true));
    }
  }
  const char* prompt_param = chat ? "messages" : "prompt";
  std::vector<int64_t> prompt_tokens;
  for (const auto& p : prompts) {
    const int64_t n = static_cast<int64_t>(p.size());
    prompt_tokens.push_back(n);
    if (n == 0) {
      throw ApiError(400, std::string("The ") + prompt_param + " is empty.",
                     "invalid_request_error", prompt_param, "invalid_value");
    }
    if (n >= context || (r.max_tokens > 0 && n + r.max_tokens > context)) {
      throw ApiError(400,
                     "This model's maximum context length is " + std::to_string(context) +
                         " tokens. However, you requested " +
                         std::to_string(n + std::max<int64_t>(r.max_tokens, 1)) + " tokens (" +
                         std::to_string(n) + " in the " + prompt_param + ", " +
                         std::to_string(std::max<int64_t>(r.max_tokens, 1)) +
                         " in the completion). Please reduce the length of the " + prompt_param +
                         " or completion.",
                     "invalid_request_error", prompt_param, "context_length_exceeded");
    }
    const int64_t vocab = std::min(tokenizer_->vocab_size(), model_->config().vocab_size);
    for (int32_t id : p) {
      // Holes of the tokenizer's id space have no text either.
      if (id >= vocab || !tokenizer_->is_assigned(id)) {
        throw ApiError(400, "Invalid token id " + std::to_string(id) + " in 'prompt'.",
                       "invalid_request_error", "prompt", "invalid_value");
      }
    }
  }

  const int n_choices = static_cast<int>(prompts.size()) * r.n;
  if (static_cast<size_t>(n_choices) > scheduler_->options().max_queue) {
    throw ApiError(400,
                   "This request asks for " + std::to_string(n_choices) +
                       " choices (prompts x n), more than this server queues at once (" +
                       std::to_string(scheduler_->options().max_queue) + ").",
                   "invalid_request_error", "n", "invalid_value");
  }
  auto exchange = std::make_shared<Exchange>();
  exchange->results.resize(n_choices);
  if (access_log_) {
    std::lock_guard lock(access_mutex_);
    AccessPending& p = access_pending_[&req];
    p.exchange = exchange;
    p.prompt_tokens = 0;
    for (int64_t n : prompt_tokens) p.prompt_tokens += n;
    if (options_.log_prompts) {
      p.prompt = chat ? (r.messages.empty() ? "" : r.messages.back().content)
                      : (r.prompt_texts.empty() ? "" : r.prompt_texts.front());
    }
  }
  // Admission and the shutdown flag are one step: a request either is refused here or is
  // submitted and in generating_ before the signal thread starts waiting for generating_.
  std::unique_lock admission(admission_mutex_);
  if (shutting_down_) {
    res.set_header("Retry-After", "5");
    throw ApiError(503, "The server is shutting down.", "server_error", "", "shutting_down");
  }
  {
    std::lock_guard lock(answering_mutex_);
    generating_.insert(&req);
  }
  const uint64_t base_seed = r.has_seed ? r.sampling.seed : std::random_device{}();
  for (int c = 0; c < n_choices; ++c) {
    runtime::GenerationRequest g;
    g.prompt = prompts[c / r.n];
    g.images = images;  // placeholders already expanded: usage counts image tokens
    g.audios = audios;
    g.max_tokens = r.max_tokens;
    g.sampling = r.sampling;
    g.sampling.seed = base_seed + static_cast<uint64_t>(c % r.n);
    g.stop = r.stop;
    g.json_object = r.json_object;
    g.json_schema = grammar;
    if (r.stream) {
      g.on_chunk = [exchange, c](const runtime::StreamChunk& chunk) {
        Exchange::Event e{c, chunk.text, {}, {}};
        if (chunk.token.id >= 0) e.token = chunk.token;
        exchange->push(std::move(e));
      };
    }
    g.on_done = [exchange, c, this](const runtime::RequestResult& result) {
      metrics_.observe_generation(result);
      exchange->push({c, {}, {}, result});
    };
    std::optional<uint64_t> id;
    try {
      id = scheduler_->submit(std::move(g));
    } catch (const Error& e) {
      for (uint64_t earlier : exchange->ids) scheduler_->cancel(earlier);
      throw ApiError(400, e.what(), "invalid_request_error", "", "invalid_value");
    }
    if (!id) {
      for (uint64_t earlier : exchange->ids) scheduler_->cancel(earlier);
      res.set_header("Retry-After", "1");
      throw ApiError(503,
                     "The server is overloaded: all slots are busy and the queue is full. "
                     "Retry later.",
                     "server_error", "", "server_overloaded");
    }
    exchange->ids.push_back(*id);
  }
  admission.unlock();

  const ResponseHead head{(chat ? "chatcmpl-" : "cmpl-") + std::to_string(created_) + "-" +
                              std::to_string(next_request_++),
                          r.model.empty() ? model_id_ : r.model, unix_time(), chat};
  const std::string& response_id = head.id;
  const std::string& model_name = head.model;
  const int64_t created = head.created;

  if (!r.stream) {
    const int fd = find_connection_socket(req.remote_addr, req.remote_port, req.local_port);
    switch (await_results(*exchange, n_choices, fd)) {
      case PeerState::kOpen:
        res.set_content(dump(completion_body(r, head, *exchange, prompt_tokens)),
                        "application/json");
        return;
      case PeerState::kGone:
        // Nobody reads the answer: free the slots now. 499 (nginx's "client closed request")
        // only shows in the metrics; the connection cannot carry it.
        cancel(*exchange);
        res.status = 499;
        return;
      case PeerState::kEndOfInput:
        respond_when_ready(res, exchange, [=, this] {
          return completion_body(r, head, *exchange, prompt_tokens);
        });
        return;
    }
  }

  // Server-Sent Events: one chunk per released text (or per token when logprobs are asked for),
  // a last chunk per choice with its finish_reason, the usage chunk if asked for, [DONE].
  const char* chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [=](json choice) {
    json c = {{"id", response_id},
              {"object", chunk_object},
              {"created", created},
              {"model", model_name},
              {"system_fingerprint", "alloyforge"},
              {"choices", json::array({std::move(choice)})}};
    if (r.include_usage) c["usage"] = nullptr;
    return "data: " + dump(c) + "\n\n";
  };
  auto started = std::make_shared<bool>(false);
  auto sent_done = std::make_shared<int>(0);
  auto last_write =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", guarded_provider([=, this](size_t, httplib::DataSink& sink) {
        std::string out;
        if (!*started) {
          *started = true;
          if (chat) {
            for (int c = 0; c < n_choices; ++c) {
              out +=
                  chunk({{"index", c},
                         {"delta", {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}},
                         {"logprobs", nullptr},
                         {"finish_reason", nullptr}});
            }
          }
        }
        std::deque<Exchange::Event> events;
        {
          std::unique_lock lock(exchange->mutex);
          exchange->changed.wait_for(lock, std::chrono::milliseconds(200),
                                     [&] { return !exchange->events.empty(); });
          events.swap(exchange->events);
        }
        for (Exchange::Event& e : events) {
          if (e.done) {
            const runtime::RequestResult& result = *e.done;
            *sent_done += 1;
            if (result.cause == runtime::StopCause::kError ||
                result.cause == runtime::StopCause::kCancelled) {
              // A choice the server ended gets an error event instead of a finish_reason
              // ("cancelled" and "error" are not OpenAI values), as vLLM does; [DONE] follows.
              const ApiError error =
                  result.cause == runtime::StopCause::kError
                      ? ApiError(500, "Generation failed: " + result.error, "server_error")
                      : ApiError(503, "The request was cancelled: the server is shutting down.",
                                 "server_error", "", "shutting_down");
              out += "data: " + dump(error_body(error)) + "\n\n";
              continue;
            }
            json choice = {{"index", e.choice},
                           {"logprobs", nullptr},
                           {"finish_reason", runtime::finish_reason(result.cause)}};
            if (chat && tools_active(r)) {
              // The held-back text: as tool_calls deltas when it holds calls, else content.
              std::mt19937_64 ids(std::random_device{}());
              out += chunk(stream_tool_delta(r, detect_tool_syntax(chat_prompt_->source()),
                                             e.choice, result.text, choice, ids));
              choice["delta"] = json::object();
            } else if (chat) {
              choice["delta"] = json::object();
            } else {
              choice["text"] = "";
            }
            out += chunk(choice);
            continue;
          }
          if (e.text.empty() && !(r.logprobs && e.token)) continue;
          // With tools, text is held until the end: a call must not stream as content.
          if (chat && tools_active(r)) continue;
          json choice = {{"index", e.choice}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          if (chat) {
            choice["delta"] = {{"content", e.text}};
            if (r.logprobs && e.token) {
              choice["logprobs"] = {{"content", json::array({token_logprobs_chat(*e.token)})},
                                    {"refusal", nullptr}};
            }
          } else {
            choice["text"] = e.text;
            if (r.logprobs && e.token) {
              json top = json::object();
              for (const auto& alt : e.token->top) {
                top[tokenizer_->token_bytes(alt.id, false)] = alt.logprob;
              }
              choice["logprobs"] = {
                  {"tokens", json::array({tokenizer_->token_bytes(e.token->id, false)})},
                  {"token_logprobs", json::array({e.token->logprob})},
                  {"top_logprobs", json::array({top})},
                  {"text_offset", json::array({0})}};
            }
          }
          out += chunk(choice);
        }
        const bool all_done = *sent_done == n_choices;
        if (all_done) {
          if (r.include_usage) {
            std::lock_guard lock(exchange->mutex);
            json c = {{"id", response_id},
                      {"object", chunk_object},
                      {"created", created},
                      {"model", model_name},
                      {"system_fingerprint", "alloyforge"},
                      {"choices", json::array()},
                      {"usage", usage(r, prompt_tokens, exchange->results)}};
            out += "data: " + dump(c) + "\n\n";
          }
          out += "data: [DONE]\n\n";
        }
        // While a request waits for a slot or a long prompt is read, an SSE comment each second
        // finds out whether the client is still there (clients ignore comments).
        const auto now = std::chrono::steady_clock::now();
        if (out.empty() && now - *last_write > std::chrono::seconds(1)) out = ": waiting\n\n";
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) return false;
          *last_write = now;
        }
        if (!sink.is_writable()) return false;
        if (all_done) sink.done();
        return true;
      }),
      [exchange, this](bool success) {
        // The client went away (or writing failed): free its slots now.
        if (!success) cancel(*exchange);
      });
}

bool Server::wait_answered(Clock::time_point deadline, bool generations_only) {
  std::unique_lock lock(answering_mutex_);
  return answered_.wait_until(lock, deadline, [&] {
    return generating_.empty() && (generations_only || writing_.empty());
  });
}

// Ends reading on every client connection, so that idle keep-alive connections and clients
// still sending a request do not hold their threads (and the thread pool's join) for up to the
// read timeout. cpp-httplib 0.11 then refuses to write to them too (it takes a readable end
// for a closed peer), so this runs only when no response is being written, and a response that
// begins later sends nothing rather than a cut one.
void Server::shut_reading() {
  std::lock_guard lock(answering_mutex_);
  reading_shut_ = true;
  shutdown_reading(options_.port);
}

// Exits the process at `deadline` if it is still running then, or at once on a second SIGTERM
// or SIGINT: a request thread that does not return (CPU work that does not look at the
// shutdown) must not keep a stopping server alive. Detached, it captures nothing that shutdown
// destroys. The signals are blocked in every thread, so sigtimedwait receives them here.
void exit_by(Clock::time_point deadline, double seconds_after_signal) {
  std::thread([deadline, seconds_after_signal] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (auto left = deadline - Clock::now(); left > Clock::duration::zero();
         left = deadline - Clock::now()) {
      const auto s = std::chrono::duration_cast<std::chrono::seconds>(left);
      const timespec timeout{static_cast<time_t>(s.count()),
                             static_cast<long>(std::chrono::nanoseconds(left - s).count())};
      if (sigtimedwait(&set, nullptr, &timeout) > 0) {
        std::fprintf(stderr, "[af-server] second signal: exiting now\n");
        std::fflush(nullptr);
        std::_Exit(0);
      }
    }
    std::fprintf(stderr,
                 "[af-server] still busy %.1f s after the signal (a request thread did not "
                 "return): exiting without it\n",
                 seconds_after_signal);
    std::fflush(nullptr);
    std::_Exit(0);
  }).detach();
}

// SIGTERM / SIGINT: new generation requests get 503 at once (the listener stays open until the
// end, so late arrivals get that answer rather than a refused connection); requests in flight
// may finish until `margin` (1 s) before the grace period ends, the rest are cancelled (error
// event or 503) and get most of that margin to write it; then the listener and every
// connection close, and the process exits by the end of the grace period whatever its threads
// are doing.
void Server::watch_signals(httplib::Server& http) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  sigwait(&set, &signal_number);
  const auto start = Clock::now();
  const double grace = options_.shutdown_grace_seconds;
  const double margin = std::min(1.0, grace / 2);
  auto at = [&](double seconds) {
    return start +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  // A little before the end: the exit itself (freeing a large process) takes time too.
  exit_by(at(grace - margin / 8), grace - margin / 8);
  {
    std::lock_guard lock(admission_mutex_);
    shutting_down_ = true;
  }
  std::fprintf(stderr,
               "[af-server] %s: refusing new requests; in-flight requests may finish for %.1f s, "
               "exit within %.1f s\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", grace - margin, grace);
  if (!wait_answered(at(grace - margin), /*generations_only=*/true)) {
    std::fprintf(stderr, "[af-server] cancelling the requests still running\n");
    if (scheduler_) scheduler_->cancel_all();
    wait_answered(at(grace - margin / 4), true);
  }
  http.stop();
  wait_answered(at(grace - margin / 4), false);  // late arrivals' 503s being written
  shut_reading();
}

bool Server::answer_cors(const httplib::Request& req, httplib::Response& res) const {
  const CorsPolicy policy{options_.cors_origins};
  const std::string origin = req.get_header_value("Origin");
  const bool allowed = policy.allows(origin);
  if (allowed) {
    res.set_header("Access-Control-Allow-Origin", policy.origins.front() == "*" ? "*" : origin);
    res.set_header("Vary", "Origin");
  }
  if (req.method != "OPTIONS") return false;
  // A preflight (or any OPTIONS): allowed origins get the methods and headers they may use;
  // others get no CORS headers, so the browser refuses the call.
  if (!allowed) {
    send_error(res, ApiError(403,
                             policy.enabled()
                                 ? "Origin '" + origin + "' is not allowed (--cors-origin)."
                                 : "Cross-origin requests are off (start with --cors-origin).",
                             "invalid_request_error", "", "cors_origin_not_allowed"));
    return true;
  }
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
  res.set_header("Access-Control-Max-Age", "600");
  return true;
}

void Server::log_access(const httplib::Request& req, const httplib::Response& res) {
  AccessRecord record;
  record.remote = req.remote_addr;
  record.method = req.method;
  record.path = req.path;
  record.status = res.status;
  {
    std::lock_guard lock(access_mutex_);
    auto it = access_pending_.find(&req);
    if (it == access_pending_.end()) return;  // refused before routing (counted in metrics)
    const AccessPending& p = it->second;
    record.milliseconds = std::chrono::duration<double, std::milli>(Clock::now() - p.start).count();
    record.prompt_tokens = p.prompt_tokens;
    record.prompt = p.prompt;
    if (auto exchange = p.exchange.lock()) {
      std::lock_guard exchange_lock(exchange->mutex);
      record.completion_tokens = 0;
      for (const auto& r : exchange->results) {
        if (r) record.completion_tokens += static_cast<int64_t>(r->tokens.size());
      }
    }
    access_pending_.erase(it);
  }
  access_log_->write(record);
}

int Server::run() {
  // Signals are taken by one thread with sigwait, so block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    if (options_.embeddings || (!models::is_whisper_model(options_.model_path) &&
                                models::is_encoder_model(options_.model_path))) {
      embeddings_ = make_embedding_service(options_.model_path, options_.threads, options_.pooling);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[af-server] error: %s\n", e.what());
    return 1;
  }
  try {
    // A Whisper -m serves the audio endpoints alone, as --whisper-model would.
    speech_only_ = models::is_whisper_model(options_.model_path);
    AF_CHECK(!speech_only_ || options_.whisper_model.empty(), ErrorCode::kInvalidArgument, "server",
             options_.model_path,
             " is a Whisper model: give it as -m or as --whisper-model, not both");
    if (speech_only_) options_.whisper_model = options_.model_path;
    tokenizer_ = tok::Tokenizer::load(options_.model_path);
    // An encoder (BertModel) only embeds: no generation model, scheduler or chat prompt.
    if (!speech_only_ && !models::is_encoder_model(options_.model_path)) {
      const auto kv_cache_type = [](const std::string& type) {
        const std::optional<DType> t = dtype_from_name(type);
        AF_CHECK(t.has_value(), ErrorCode::kInvalidArgument, "server", "unknown KV cache type '",
                 type, "' (f32, f16, q8_0)");
        return *t;
      };
      models::LoadOptions load;
      load.num_threads = options_.threads;
      load.context_length = options_.ctx_size;
      load.kv_type = kv_cache_type(options_.kv_type);
      if (!options_.cache_type_k.empty()) load.kv_type_k = kv_cache_type(options_.cache_type_k);
      if (!options_.cache_type_v.empty()) load.kv_type_v = kv_cache_type(options_.cache_type_v);
      load.mmproj = options_.mmproj;
      model_ = models::load(options_.model_path, load);
      runtime::SchedulerOptions so;
      so.parallel = options_.parallel;
      so.slot_context = options_.ctx_size;
      so.max_queue = static_cast<size_t>(std::max(8, 4 * options_.parallel));
      so.eos_ids = runtime::default_end_tokens(*model_, tokenizer_.get());
      so.encoder_cache_mb = options_.encoder_cache_mb;
      scheduler_ = std::make_unique<runtime::Scheduler>(*model_, *tokenizer_, so);
      chat_template_source_ = options_.chat_template_file.empty()
                                  ? runtime::find_model_chat_template(options_.model_path)
                                  : read_template_file(options_.chat_template_file);
      chat_prompt_ = std::make_unique<ChatPrompt>(chat_template_source_, *tokenizer_,
                                                  options_.template_limits);
    }
    if (!options_.whisper_model.empty()) {
      audio_ = std::make_unique<AudioApi>(options_.whisper_model, options_.threads,
                                          models::WhisperTranscribeOptions{});
    }
    if (!options_.access_log.empty()) {
      access_log_ = std::make_unique<AccessLog>(options_.access_log);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[af-server] error: %s\n", e.what());
    return 1;
  }
  std::filesystem::path p(options_.model_path);
  model_id_ = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  if (!options_.alias.empty()) model_id_ = options_.alias;

  // Connections, request heads and timeouts are bounded by the front; bodies by read_body.
  GuardedServer http(options_.front);
  http.set_payload_max_length(options_.max_body);
  http.on_refused = [this](int status) { metrics_.count_request("", status); };

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (access_log_) {
      std::lock_guard lock(access_mutex_);
      access_pending_[&req].start = Clock::now();
    }
    refuse_unexpected_body(req);
    if (answer_cors(req, res)) return httplib::Server::HandlerResponse::Handled;
    // The page's static files carry no data; its API calls send the key the user types in.
    const bool page = options_.web_ui && req.method == "GET" && find_web_asset(req.path);
    if (options_.api_key.empty() || req.path == "/health" || page) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (!bearer_key_matches(req.get_header_value("Authorization"), options_.api_key)) {
      send_error(res, ApiError(401,
                               "Incorrect API key provided. Send it as 'Authorization: "
                               "Bearer <key>'.",
                               "invalid_request_error", "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send_error(res, ApiError(404, "Unknown request URL: " + req.method + " " + req.path + ".",
                               "invalid_request_error", "", "unknown_url"));
    } else if (res.status == 413) {
      send_error(res, ApiError(413, "The request body is too large.", "invalid_request_error", "",
                               "request_too_large"));
    } else if (res.status == 400) {
      send_error(res, ApiError(400, "Malformed HTTP request (request line or headers).",
                               "invalid_request_error", "", "invalid_http"));
    } else {
      send_error(res, ApiError(res.status, "HTTP error " + std::to_string(res.status) + ".",
                               res.status >= 500 ? "server_error" : "invalid_request_error"));
    }
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const ApiError& e) {
          send_error(res, e);
        } catch (const Error& e) {
          const bool bad_input =
              e.code() == ErrorCode::kInvalidArgument || e.code() == ErrorCode::kOutOfRange;
          send_error(res, ApiError(bad_input ? 400 : 500, e.what(),
                                   bad_input ? "invalid_request_error" : "server_error"));
        } catch (const std::exception& e) {
          send_error(res, ApiError(500, e.what(), "server_error"));
        }
      });
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    std::lock_guard lock(answering_mutex_);
    if (!reading_shut_) writing_.insert(&req);
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(req.path, res.status);
    if (access_log_) log_access(req, res);
    // cpp-httplib calls the logger once the response is written (or failed).
    std::lock_guard lock(answering_mutex_);
    if (generating_.erase(&req) + writing_.erase(&req) > 0) answered_.notify_all();
  });

  if (options_.web_ui) {
    for (const auto& asset : web_assets()) {
      http.Get(std::string(asset.path), [&asset](const httplib::Request&, httplib::Response& res) {
        res.set_header("Content-Security-Policy", kWebContentSecurityPolicy);
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("Cache-Control", "no-cache");
        res.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type));
      });
    }
  }
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down_) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  // What /v1/models reports the model accepts (a field OpenAI does not define; vLLM-style).
  const auto modalities = [this] {
    auto* mm = dynamic_cast<models::MultimodalLM*>(model_.get());
    if (speech_only_) return json::array({"audio"});
    json list = json::array({"text"});
    if (mm && mm->image_token_id() >= 0) list.push_back("image");
    if (mm && mm->audio_encoder()) list.push_back("audio");
    return list;
  };
  http.Get("/v1/models", [this, modalities](const httplib::Request&, httplib::Response& res) {
    json body = {{"object", "list"},
                 {"data", json::array({{{"id", model_id_},
                                        {"object", "model"},
                                        {"created", created_},
                                        {"owned_by", "alloyforge"},
                                        {"modalities", modalities()}}})}};
    res.set_content(dump(body), "application/json");
  });
  http.Get(R"(/v1/models/(.+))", [this, modalities](const httplib::Request& req,
                                                    httplib::Response& res) {
    if (req.matches[1] != model_id_) {
      throw ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist.",
                     "invalid_request_error", "model", "model_not_found");
    }
    res.set_content(dump({{"id", model_id_},
                          {"object", "model"},
                          {"created", created_},
                          {"owned_by", "alloyforge"},
                          {"modalities", modalities()}}),
                    "application/json");
  });
  http.Get("/props", [this, modalities](const httplib::Request&, httplib::Response& res) {
    const json chat_template =
        chat_template_source_ ? json(*chat_template_source_) : json(nullptr);  // null: ChatML
    res.set_content(
        dump({{"model_alias", model_id_},
              {"model_path", options_.model_path},
              {"total_slots", scheduler_ ? options_.parallel : 0},
              {"default_generation_settings",
               {{"n_ctx", scheduler_ ? json(scheduler_->slot_context()) : json(nullptr)}}},
              {"chat_template", chat_template},
              {"modalities", modalities()},
              {"build_info", af::apps::version_line("af-server")}}),
        "application/json");
  });
  const auto post_json = [&](const char* path, std::function<json(const std::string&)> answer) {
    http.Post(path, [this, answer](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& reader) {
      res.set_content(dump(answer(read_body(req, res, reader, options_))), "application/json");
    });
  };
  post_json("/tokenize",
            [this](const std::string& body) { return tokenize_response(body, *tokenizer_); });
  post_json("/detokenize",
            [this](const std::string& body) { return detokenize_response(body, *tokenizer_); });
  post_json("/apply-template", [this](const std::string& body) {
    if (!chat_prompt_) {
      throw ApiError(400,
                     speech_only_ ? "This model transcribes speech: it has no chat template."
                                  : "This model only embeds: it has no chat template.",
                     "invalid_request_error", "", "unsupported_endpoint");
    }
    return apply_template_response(body, *chat_prompt_);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(scheduler_ ? scheduler_->stats() : runtime::SchedulerStats{},
                                    options_.parallel),
                    "text/plain; version=0.0.4");
  });
  // Bodies are read through a ContentReader so that one limit applies to the decoded bytes
  // whatever the framing (httplib's own reading bounds only Content-Length bodies).
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                           const httplib::ContentReader& reader) {
    handle_generate(Endpoint::kChatCompletions, req, read_body(req, res, reader, options_), res);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res,
                                      const httplib::ContentReader& reader) {
    handle_generate(Endpoint::kCompletions, req, read_body(req, res, reader, options_), res);
  });
  for (const bool translate : {false, true}) {
    http.Post(translate ? "/v1/audio/translations" : "/v1/audio/transcriptions",
              [this, translate](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) {
                if (!audio_) {
                  throw ApiError(404, "No speech model: start af-server with --whisper-model DIR.",
                                 "invalid_request_error", "", "model_not_found");
                }
                audio_->handle(req, res, reader, options_, translate);
              });
  }
  if (embeddings_) {
    http.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& reader) {
      if (shutting_down_) {
        res.set_header("Retry-After", "5");
        throw ApiError(503, "The server is shutting down.", "server_error", "", "shutting_down");
      }
      const std::string body = read_body(req, res, reader, options_);
      res.set_content(dump(embeddings_->respond(body, model_id_)), "application/json");
    });
  }

  if (!http.bind_to_port(options_.host, options_.port)) {
    std::fprintf(stderr, "[af-server] error: cannot listen on %s:%d: %s\n", options_.host.c_str(),
                 options_.port, std::strerror(errno));
    return 1;
  }
  widen_listen_backlog(options_.port);
  if (!scheduler_) {
    std::fprintf(stderr, "[af-server] serving %s of %s on http://%s:%d (%s)\n",
                 speech_only_ ? "speech recognition" : "embeddings", model_id_.c_str(),
                 options_.host.c_str(), options_.port,
                 options_.api_key.empty() ? "no API key" : "API key required");
  } else {
    const models::ModelInfo& info = model_->info();
    std::fprintf(stderr,
                 "[af-server] serving %s on http://%s:%d (%d slots of %lld tokens, KV cache %s/%s "
                 "(K/V) %lld bytes per token, %s, %s)\n",
                 model_id_.c_str(), options_.host.c_str(), options_.port, options_.parallel,
                 static_cast<long long>(scheduler_->slot_context()),
                 std::string(name(info.kv_type_k)).c_str(),
                 std::string(name(info.kv_type_v)).c_str(),
                 static_cast<long long>(info.kv_bytes_per_token),
                 options_.api_key.empty() ? "no API key" : "API key required",
                 !options_.chat_template_file.empty()  ? "the --chat-template file"
                 : chat_prompt_->uses_model_template() ? "the model's chat template"
                                                       : "ChatML (the model has no chat template)");
  }
  std::thread signals([&] { watch_signals(http); });
  http.listen_after_bind();
  if (!shutting_down_) {
    // listen ended without a signal (should not happen): wake the signal thread to exit.
    shutting_down_ = true;
    pthread_kill(signals.native_handle(), SIGTERM);
  }
  signals.join();
  scheduler_.reset();
  std::fprintf(stderr, "[af-server] stopped\n");
  return 0;
}

}  // namespace

int run_server(const ServerOptions& options) {
  Server server(options);
  return server.run();
}

}  // namespace af::server
