// af-cli chat -m PATH [--system TEXT] [--template FILE.jinja] [--parse-special-in-content]
//             [sampling, --stop, --quantize, --kv-type flags as run] [--template-max-steps N, ...]
// Interactive chat with the model's chat template: one line (or a multi-line block) is one user
// message, the reply streams to stdout, the history is kept (and its KV cache reused); when the
// context fills, the oldest turns are dropped (the system prompt stays). /help lists commands.
// Line editing and history with libedit on a terminal. Ctrl-C stops the current reply, not the
// program; end of input ends the chat. Works from a pipe.
// "/image PATH" attaches an image to the next message (multimodal models; --mmproj for a GGUF),
// "/audio PATH" an audio file (audio-language models such as Qwen2-Audio).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/modalities/image.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "cli_common.hpp"
#include "commands.hpp"
#include "line_reader.hpp"
#include "model_options.hpp"
#include "sampling_options.hpp"
#include "template_limit_options.hpp"

namespace af::cli {
namespace {

// Set by SIGINT while a reply is streaming; the only state a signal handler may touch.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void on_sigint(int) { g_interrupted.store(true); }

// ChatML, the fallback llama.cpp uses too, for models that ship no template.
constexpr char kChatMl[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AF_CHECK(in.good(), ErrorCode::kIo, "cli", "cannot read ", path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

constexpr char kHelp[] =
    "commands: /help this text, /reset clear the history (the system prompt stays), /exit or\n"
    "/quit leave (also end of input). A line ending in '\\' continues on the next line; a line\n"
    "holding only \"\"\" starts and ends a multi-line message. /image PATH attaches an image to\n"
    "the next message (multimodal models), /audio PATH an audio file (audio-language models).\n"
    "Ctrl-C stops a reply.\n";

// The chat's context: -c, else 4096 or the model's trained context when that is smaller.
constexpr int64_t kDefaultChatContext = 4096;

// Tokens of the prompt the next turn would send with `user` (and its `images`) appended to the
// history. Each image counts its expanded rows (the template writes one placeholder per image;
// Session::generate expands it), so dropping a turn also frees its images' rows. A text-only
// model counts no images: chat() refuses them with its own message.
int64_t prompt_tokens(Session& session, const std::string& system, const std::string& user,
                      const GenerateRequest& turn) {
  auto* multimodal = dynamic_cast<models::MultimodalLM*>(&session.model());
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  for (const ChatMessage& m : session.history()) messages.push_back(m);
  messages.push_back({"user", user, turn.images, {}, turn.audios});
  int64_t image_rows = 0;
  for (ChatMessage& m : messages) {
    if (!multimodal || multimodal->image_token_id() < 0) m.images.clear();
    if (!multimodal || !multimodal->audio_encoder()) m.audios.clear();
    for (const modalities::Image& image : m.images) {
      image_rows += multimodal->image_encoder().num_image_tokens(image) - 1;
    }
    for (const modalities::Audio& audio : m.audios) {
      image_rows += multimodal->audio_encoder()->num_audio_tokens(audio) - 1;
    }
  }
  const std::string text = session.render_chat(messages, /*add_generation_prompt=*/true);
  return static_cast<int64_t>(session.tokenizer()->encode(text, false, true).size()) + image_rows;
}

// Context shift: drops the oldest turns (never the system prompt; a turn's images go with it)
// until the next prompt plus `reserve` reply tokens fits the context, and says so on stderr.
// False when even the message alone does not fit.
bool make_room(Session& session, const std::string& system, const std::string& user,
               const GenerateRequest& turn, int64_t reserve) {
  const int64_t ctx = session.context_length();
  int64_t need = prompt_tokens(session, system, user, turn);
  size_t dropped = 0;
  while (need + reserve > ctx && !session.history().empty()) {
    dropped += session.drop_oldest_turns(1);
    need = prompt_tokens(session, system, user, turn);
  }
  if (dropped > 0) {
    std::fprintf(stderr,
                 "[af-cli chat] context full (%lld tokens): dropped the %zu oldest turn%s, "
                 "kept the system prompt\n",
                 static_cast<long long>(ctx), dropped, dropped == 1 ? "" : "s");
  }
  if (need < ctx) return true;
  std::fprintf(stderr,
               "[af-cli chat] error: this message needs %lld tokens; the context holds %lld "
               "(-c/--ctx-size): shorten it (the conversation is kept)\n",
               static_cast<long long>(need), static_cast<long long>(ctx));
  return false;
}

std::string history_path() {
  const char* home = std::getenv("HOME");
  return home ? std::string(home) + "/.af_cli_chat_history" : std::string();
}

}  // namespace

Command add_chat(CLI::App& app) {
  struct Options {
    std::string system, template_path;
    int n_predict = 512;
    bool parse_special_in_content = false, escape = true;
    std::vector<std::string> stop;
    SamplingOptions sampling;
    ModelOptions model;
    tok::TemplateLimits template_limits;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("chat", "Chat interactively with the model's chat template");
  sub->add_option("--system", o->system, "system prompt (kept when old turns are dropped)");
  sub->add_option("--template", o->template_path,
                  "Jinja chat template file (default: the model's own, else ChatML)");
  sub->add_option("-n,--n-predict", o->n_predict, "most tokens per reply");
  add_sampling_options(*sub, o->sampling);
  add_stop_option(*sub, o->stop);
  sub->add_flag("-e,--escape,!--no-escape", o->escape,
                "process \\n, \\t, \\\\, \\xHH ... in --system/--stop text (default on, as "
                "llama-cli; --no-escape keeps backslashes)");
  add_model_options(*sub, o->model,
                    "context length (0: 4096, or the model's trained context if smaller); when "
                    "full, the oldest turns are dropped",
                    /*extend=*/false);
  add_template_limit_options(*sub, o->template_limits);
  sub->add_flag("--parse-special-in-content", o->parse_special_in_content,
                "parse special-token text typed in messages into control tokens, as "
                "transformers does (default: plain text, so a message cannot forge turns)");
  return [o]() {
    require_flag(o->n_predict >= 1, "-n/--n-predict",
                 "must be >= 1, got " + std::to_string(o->n_predict));
    check_sampling_options(o->sampling);
    check_model_options(o->model);
    note_gpu_flags(o->model.gpu, "chat");
    const std::vector<std::string> stop = process_stop_strings(o->stop, o->escape);
    const std::string system = o->escape ? unescape(o->system) : o->system;
    const int64_t trained = trained_context(o->model.path);
    // -c beyond the trained context is the user's explicit choice (warned about).
    const int64_t context = o->model.ctx > 0 ? plan_context(o->model, trained, 1, 1, "chat")
                                             : std::min(kDefaultChatContext, trained);
    auto model = load_with_progress(o->model.path, make_load_options(o->model, context), "chat");
    SessionBuilder builder;
    if (!o->template_path.empty()) {
      builder.chat_template(read_file(o->template_path));
    } else if (!tok::find_chat_template(o->model.path)) {
      std::fprintf(stderr, "[af-cli chat] the model has no chat template; using ChatML\n");
      builder.chat_template(kChatMl);
    }
    builder.system_prompt(system);
    builder.parse_special_in_content(o->parse_special_in_content);
    builder.template_limits(o->template_limits);
    Session session = builder.build(std::move(model));

    const bool interactive = isatty(STDIN_FILENO) != 0;
    if (interactive) {
      std::fprintf(stderr, "[af-cli chat] /help for commands%s\n",
                   LineReader::has_line_editing() ? " (line editing and history: libedit)" : "");
    }
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    sigaction(SIGINT, &action, &previous);

    GenerateRequest request;
    request.max_tokens = o->n_predict;
    request.sampling = make_sampling_params(o->sampling);
    request.stop = stop;
    request.on_prefill = prefill_progress();
    request.on_token = [](const TokenEvent& event) {
      std::fwrite(event.text.data(), 1, event.text.size(), stdout);
      std::fflush(stdout);
      return !g_interrupted.load();
    };
    // Room kept for the reply when old turns are dropped.
    const int64_t reserve = std::min<int64_t>(o->n_predict, session.context_length() / 4);
    LineReader reader(interactive, interactive ? history_path() : std::string());
    int status = 0;
    for (;;) {
      g_interrupted.store(false);
      const std::optional<std::string> message = reader.read_message();
      if (!message) break;
      const std::string& line = *message;
      if (line.empty()) continue;
      if (line == "/help") {
        std::fputs(kHelp, stdout);
        continue;
      }
      if (line == "/reset") {
        session.reset();
        std::fputs("[history cleared]\n", stdout);
        continue;
      }
      if (line == "/exit" || line == "/quit") break;
      if (line.rfind("/image ", 0) == 0) {
        try {
          request.images.push_back(modalities::Image::load(line.substr(7)));
          std::fprintf(stderr, "[image attached to the next message]\n");
        } catch (const Error& e) {
          std::fprintf(stderr, "af-cli: error: %s (the conversation is kept)\n", e.what());
          status = 1;
        }
        continue;
      }
      if (line.rfind("/audio ", 0) == 0) {
        try {
          request.audios.push_back(modalities::Audio::load(line.substr(7)));
          std::fprintf(stderr, "[audio attached to the next message]\n");
        } catch (const Error& e) {
          std::fprintf(stderr, "af-cli: error: %s (the conversation is kept)\n", e.what());
          status = 1;
        }
        continue;
      }
      // A failed turn (a template budget, a message too long, an image to a text-only model) is
      // reported and the conversation goes on; the exit status still says something failed. The
      // attached images belong to this turn either way.
      try {
        const bool fits = make_room(session, system, line, request, reserve);
        if (!fits) {
          request.images.clear();
          request.audios.clear();
          status = 1;
          continue;
        }
        const GenerateResponse res = session.chat(line, request);
        request.images.clear();
        request.audios.clear();
        std::fputs("\n", stdout);
        std::fflush(stdout);
        if (res.finish_reason == FinishReason::kCancelled) {
          std::fprintf(stderr, "[reply stopped]\n");
        } else if (res.finish_reason == FinishReason::kContextFull) {
          std::fprintf(stderr,
                       "[af-cli chat] the context is full: the reply was cut; the oldest turns "
                       "will be dropped for the next message\n");
        }
        std::fprintf(stderr,
                     "[af-cli chat] %s | prompt %lld tokens (%lld reused) | %zu tokens, %.1f "
                     "tok/s\n",
                     std::string(to_string(res.finish_reason)).c_str(),
                     static_cast<long long>(res.prompt_tokens),
                     static_cast<long long>(res.cached_tokens), res.ids.size(),
                     res.timings.generated_tokens_per_s);
      } catch (const Error& e) {
        request.images.clear();
        request.audios.clear();
        std::fprintf(stderr, "af-cli: error: %s (the conversation is kept)\n", e.what());
        status = 1;
      }
    }
    sigaction(SIGINT, &previous, nullptr);
    return status;
  };
}

}  // namespace af::cli
