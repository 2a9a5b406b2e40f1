#include "server.hpp"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <httplib.h>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "api.hpp"
#include "chat_prompt.hpp"
#include "metrics.hpp"
#include "runtime/end_tokens.hpp"

namespace af::server {

using nlohmann::json;

namespace {

std::string dump(const json& j) {
  // Token pieces may be partial UTF-8; replace rather than throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
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

class Server {
 public:
  explicit Server(const ServerOptions& options) : options_(options) {}

  int run();

 private:
  void handle_generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  json token_logprobs_chat(const runtime::GeneratedToken& t) const;
  json usage(const ApiRequest& r, const std::vector<int64_t>& prompt_tokens,
             const std::vector<std::optional<runtime::RequestResult>>& results) const;
  void watch_signals(httplib::Server& http);

  ServerOptions options_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::unique_ptr<models::CausalLM> model_;
  std::unique_ptr<runtime::Scheduler> scheduler_;
  std::unique_ptr<ChatPrompt> chat_prompt_;
  std::string model_id_;
  int64_t created_ = unix_time();
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> next_request_{1};
  Metrics metrics_;
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

void Server::handle_generate(Endpoint endpoint, const httplib::Request& req,
                             httplib::Response& res) {
  if (shutting_down_) {
    res.set_header("Retry-After", "5");
    throw ApiError(503, "The server is shutting down.", "server_error", "", "shutting_down");
  }
  const ApiRequest r = parse_request(endpoint, req.body);
  const bool chat = endpoint == Endpoint::kChatCompletions;
  const int64_t context = scheduler_->slot_context();

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
    const std::string text = chat_prompt_->render(r.messages);
    // Templates usually write the BOS token themselves; do not add a second one.
    const int32_t bos = tokenizer_->bos_id();
    const bool has_bos = bos >= 0 && text.starts_with(tokenizer_->token_piece(bos));
    prompts.push_back(encode(text, /*add_special=*/!has_bos));
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
      if (id >= vocab) {
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
  const uint64_t base_seed = r.has_seed ? r.sampling.seed : std::random_device{}();
  for (int c = 0; c < n_choices; ++c) {
    runtime::GenerationRequest g;
    g.prompt = prompts[c / r.n];
    g.max_tokens = r.max_tokens;
    g.sampling = r.sampling;
    g.sampling.seed = base_seed + static_cast<uint64_t>(c % r.n);
    g.stop = r.stop;
    g.json_object = r.json_object;
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

  const std::string id_prefix = chat ? "chatcmpl-" : "cmpl-";
  const std::string response_id =
      id_prefix + std::to_string(created_) + "-" + std::to_string(next_request_++);
  const std::string model_name = r.model.empty() ? model_id_ : r.model;
  const int64_t created = unix_time();
  const char* object = chat ? "chat.completion" : "text_completion";

  if (!r.stream) {
    std::unique_lock lock(exchange->mutex);
    exchange->changed.wait(lock, [&] { return exchange->finished == n_choices; });
    json choices = json::array();
    for (int c = 0; c < n_choices; ++c) {
      const runtime::RequestResult& result = *exchange->results[c];
      if (result.cause == runtime::StopCause::kError) {
        throw ApiError(500, "Generation failed: " + result.error, "server_error");
      }
      if (result.cause == runtime::StopCause::kCancelled) {
        throw ApiError(503, "The request was cancelled because the server is shutting down.",
                       "server_error", "", "shutting_down");
      }
      json choice = {{"index", c}, {"finish_reason", runtime::finish_reason(result.cause)}};
      json logprobs = nullptr;
      if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", result.text}, {"refusal", nullptr}};
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
    json body = {{"id", response_id},
                 {"object", object},
                 {"created", created},
                 {"model", model_name},
                 {"system_fingerprint", "alloyforge"},
                 {"choices", choices},
                 {"usage", usage(r, prompt_tokens, exchange->results)}};
    res.set_content(dump(body), "application/json");
    return;
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
      "text/event-stream",
      [=, this](size_t, httplib::DataSink& sink) {
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
            if (result.cause == runtime::StopCause::kError ||
                result.cause == runtime::StopCause::kCancelled) {
              const ApiError error =
                  result.cause == runtime::StopCause::kError
                      ? ApiError(500, "Generation failed: " + result.error, "server_error")
                      : ApiError(503, "The request was cancelled: the server is shutting down.",
                                 "server_error", "", "shutting_down");
              out += "data: " + dump(error_body(error)) + "\n\n";
            }
            json choice = {{"index", e.choice},
                           {"logprobs", nullptr},
                           {"finish_reason", runtime::finish_reason(result.cause)}};
            if (chat) {
              choice["delta"] = json::object();
            } else {
              choice["text"] = "";
            }
            out += chunk(choice);
            *sent_done += 1;
            continue;
          }
          if (e.text.empty() && !(r.logprobs && e.token)) continue;
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
      },
      [exchange, this](bool success) {
        // The client went away (or writing failed): free its slots now.
        if (!success) {
          for (uint64_t id : exchange->ids) scheduler_->cancel(id);
        }
      });
}

void Server::watch_signals(httplib::Server& http) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  sigwait(&set, &signal_number);
  std::fprintf(stderr, "[af-server] %s: finishing in-flight requests (up to %.0f s)\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", options_.shutdown_grace_seconds);
  shutting_down_ = true;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.shutdown_grace_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto s = scheduler_->stats();
    if (s.active == 0 && s.queued == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  scheduler_->cancel_all();
  // Let streams write their last events before the listener and connections close.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  http.stop();
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
    tokenizer_ = tok::Tokenizer::load(options_.model_path);
    models::LoadOptions load;
    load.num_threads = options_.threads;
    load.context_length = options_.ctx_size;
    load.kv_type = options_.kv_type == "f16" ? DType::F16 : DType::F32;
    model_ = models::load(options_.model_path, load);
    runtime::SchedulerOptions so;
    so.parallel = options_.parallel;
    so.slot_context = options_.ctx_size;
    so.max_queue = static_cast<size_t>(std::max(8, 4 * options_.parallel));
    so.eos_ids = runtime::default_end_tokens(*model_, tokenizer_.get());
    scheduler_ = std::make_unique<runtime::Scheduler>(*model_, *tokenizer_, so);
    chat_prompt_ = std::make_unique<ChatPrompt>(
        runtime::find_model_chat_template(options_.model_path), *tokenizer_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[af-server] error: %s\n", e.what());
    return 1;
  }
  std::filesystem::path p(options_.model_path);
  model_id_ = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();

  httplib::Server http;
  const int http_threads = std::max(32, 8 * options_.parallel + 16);
  http.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  http.set_payload_max_length(options_.max_body);
  http.set_keep_alive_timeout(2);
  http.set_read_timeout(30);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || req.path == "/health") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const std::string expected = "Bearer " + options_.api_key;
    if (req.get_header_value("Authorization") != expected) {
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
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(req.path, res.status);
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down_) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json body = {{"object", "list"},
                 {"data", json::array({{{"id", model_id_},
                                        {"object", "model"},
                                        {"created", created_},
                                        {"owned_by", "alloyforge"}}})}};
    res.set_content(dump(body), "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(scheduler_->stats(), options_.parallel),
                    "text/plain; version=0.0.4");
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::kChatCompletions, req, res);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::kCompletions, req, res);
  });

  if (!http.bind_to_port(options_.host, options_.port)) {
    std::fprintf(stderr, "[af-server] error: cannot listen on %s:%d\n", options_.host.c_str(),
                 options_.port);
    return 1;
  }
  widen_listen_backlog(options_.port);
  std::fprintf(stderr, "[af-server] serving %s on http://%s:%d (%d slots of %lld tokens, %s, %s)\n",
               model_id_.c_str(), options_.host.c_str(), options_.port, options_.parallel,
               static_cast<long long>(scheduler_->slot_context()),
               options_.api_key.empty() ? "no API key" : "API key required",
               chat_prompt_->uses_model_template() ? "the model's chat template"
                                                   : "ChatML (the model has no chat template)");
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
