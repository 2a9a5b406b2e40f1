// af-cli chat -m PATH [--system TEXT] [--template FILE.jinja] [--parse-special-in-content]
//             [sampling flags] [--template-max-steps N, --template-max-memory BYTES, ...]
// Interactive chat with the model's chat template: one line is one user message, the reply
// streams to stdout, the history is kept (and its KV cache reused), "/reset" clears it. Ctrl-C
// stops the current reply, not the program; end of input ends the chat. Works from a pipe.
// "/image PATH" attaches an image to the next message (multimodal models; --mmproj for a GGUF).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "commands.hpp"
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

}  // namespace

Command add_chat(CLI::App& app) {
  struct Options {
    std::string path, system, template_path, isa, mmproj;
    int n_predict = 512, threads = 0;
    int64_t ctx = 4096;
    bool parse_special_in_content = false;
    SamplingOptions sampling;
    tok::TemplateLimits template_limits;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("chat", "Chat interactively with the model's chat template");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  sub->add_option("--mmproj", o->mmproj, "llama.cpp mmproj GGUF (image encoder) for a text GGUF");
  sub->add_option("--system", o->system, "system prompt");
  sub->add_option("--template", o->template_path,
                  "Jinja chat template file (default: the model's own, else ChatML)");
  sub->add_option("-n,--n-predict", o->n_predict, "most tokens per reply");
  add_sampling_options(*sub, o->sampling);
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("-c,--ctx-size", o->ctx, "context length (0: the model's)");
  add_isa_option(*sub, o->isa);
  add_template_limit_options(*sub, o->template_limits);
  sub->add_flag("--parse-special-in-content", o->parse_special_in_content,
                "parse special-token text typed in messages into control tokens, as "
                "transformers does (default: plain text, so a message cannot forge turns)");
  return [o]() {
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.context_length = o->ctx;  // KV memory is committed only as the chat grows
    options.mmproj = o->mmproj;
    auto model = models::load(o->path, options);
    SessionBuilder builder;
    if (!o->template_path.empty()) {
      builder.chat_template(read_file(o->template_path));
    } else if (!tok::find_chat_template(o->path)) {
      std::fprintf(stderr, "[af-cli chat] the model has no chat template; using ChatML\n");
      builder.chat_template(kChatMl);
    }
    builder.system_prompt(o->system);
    builder.parse_special_in_content(o->parse_special_in_content);
    builder.template_limits(o->template_limits);
    Session session = builder.build(std::move(model));

    const bool interactive = isatty(STDIN_FILENO) != 0;
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    sigaction(SIGINT, &action, &previous);

    GenerateRequest request;
    request.max_tokens = o->n_predict;
    request.sampling = make_sampling_params(o->sampling);
    request.on_token = [](const TokenEvent& event) {
      std::fwrite(event.text.data(), 1, event.text.size(), stdout);
      std::fflush(stdout);
      return !g_interrupted.load();
    };
    std::string line;
    for (;;) {
      if (interactive) {
        std::fputs("> ", stdout);
        std::fflush(stdout);
      }
      g_interrupted.store(false);
      if (!std::getline(std::cin, line)) {
        if (g_interrupted.load() && interactive) {  // Ctrl-C at the prompt: a fresh line
          std::cin.clear();
          std::fputs("\n", stdout);
          continue;
        }
        break;
      }
      if (line.empty()) continue;
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
          std::fprintf(stderr, "[af-cli chat] %s\n", e.what());
        }
        continue;
      }
      GenerateResponse res;
      try {
        res = session.chat(line, request);
      } catch (const Error& e) {
        // A turn with images that cannot run (a text-only model, images past the context) ends
        // the turn, not the chat; other errors end the chat as before.
        if (request.images.empty()) throw;
        request.images.clear();
        std::fprintf(stderr, "[af-cli chat] %s\n", e.what());
        continue;
      }
      request.images.clear();
      std::fputs("\n", stdout);
      std::fflush(stdout);
      if (res.finish_reason == FinishReason::kCancelled) {
        std::fprintf(stderr, "[reply stopped]\n");
      }
      std::fprintf(
          stderr, "[af-cli chat] %s | prompt %lld tokens (%lld reused) | %zu tokens, %.1f tok/s\n",
          std::string(to_string(res.finish_reason)).c_str(),
          static_cast<long long>(res.prompt_tokens), static_cast<long long>(res.cached_tokens),
          res.ids.size(), res.timings.generated_tokens_per_s);
    }
    sigaction(SIGINT, &previous, nullptr);
    return 0;
  };
}

}  // namespace af::cli
