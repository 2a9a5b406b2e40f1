// af-server -m PATH [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx-size N]
//           [--api-key KEY | --api-key-file PATH] [--threads N] [--kv-type f32|f16|q8_0]
//           [-ctk/--cache-type-k f32|f16|q8_0] [-ctv/--cache-type-v f32|f16|q8_0]
//           [--shutdown-grace S] [--parse-special-in-content]
//           [HTTP limits: --max-body-bytes, --header-timeout, --request-timeout, ...]
//           [chat-template limits: --template-max-steps, --template-max-memory, ...]
// An OpenAI-compatible HTTP server (see docs/SERVER.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "build_info.hpp"
#include "http_guard.hpp"
#include "server.hpp"

namespace {

// HTTP front limits (docs/SERVER.md, "Limits").
void add_limit_options(CLI::App& app, af::server::ServerOptions& o) {
  af::server::FrontLimits& f = o.front;
  app.add_option("--max-body-bytes", o.max_body, "request body limit, after decoding (413)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--header-timeout", f.header_timeout, "seconds to receive request headers (408)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--request-timeout,--timeout", f.request_timeout,
                 "seconds to receive a whole request, body included (408; --timeout as "
                 "llama-server names it)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--keep-alive-timeout", f.keep_alive_timeout,
                 "seconds an idle connection is kept open")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-header-bytes", f.head.max_bytes, "request line + headers limit (431)")
      ->check(CLI::Range(size_t{256}, size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-header-lines", f.head.max_lines, "header lines limit (431)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-connections", f.max_connections, "open connections in all (503)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--max-connections-per-client", f.max_connections_per_client,
                 "open connections from one IP address (429)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
}

// Chat-template budgets (docs/SERVER.md, "Limits"); a rendering past one answers 500.
void add_template_limit_options(CLI::App& app, af::tok::TemplateLimits& t) {
  app.add_option("--template-max-steps", t.max_steps, "chat template: evaluation steps (500)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--template-max-memory", t.max_memory_bytes,
                 "chat template: bytes of values one rendering may create (500)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--template-max-string-bytes", t.max_string_bytes,
                 "chat template: bytes of any one string, the prompt included (500)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--template-max-depth", t.max_depth,
                 "chat template: nested evaluation depth, macro recursion included (500)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  af::server::ServerOptions o;
  CLI::App app{"af-server: OpenAI-compatible HTTP server with continuous batching"};
  app.set_version_flag("--version", af::apps::version_line("af-server"));
  app.add_option("-m,--model", o.model_path, "HF folder, .safetensors or .gguf file")->required();
  app.add_option("--host", o.host, "address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "port to listen on")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  app.add_option("-p,--parallel", o.parallel, "sequences generated together (slots)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("-c,--ctx-size", o.ctx_size, "context length per slot (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  auto* key = app.add_option("--api-key", o.api_key,
                             "require 'Authorization: Bearer KEY' (visible in the process list: "
                             "prefer --api-key-file or AF_API_KEY)");
  std::string key_file;
  app.add_option("--api-key-file", key_file, "read the API key from this file's first line")
      ->excludes(key);
  app.add_option("-t,--threads", o.threads, "compute threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-webui{false}", o.web_ui, "do not serve the chat page at /");
  app.add_option("-a,--alias", o.alias, "model id shown to clients (default: the file name)");
  app.add_option("--chat-template", o.chat_template_file,
                 "Jinja chat template file used instead of the model's")
      ->check(CLI::ExistingFile);
  app.add_option("--cors-origin", o.cors_origins,
                 "allow browser calls from this origin (repeatable; '*' allows any); off by "
                 "default");
  app.add_option("--access-log", o.access_log,
                 "one line per request (method, path, status, tokens, ms) to this file, or - "
                 "for stderr; off by default");
  app.add_flag("--log-prompts", o.log_prompts, "access log lines include the prompt text");
  app.add_option("--kv-type", o.kv_type,
                 "KV cache elements, keys and values: f32 (exact, default), f16 or q8_0")
      ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  app.add_option("--cache-type-k", o.cache_type_k,
                 "llama.cpp's -ctk: the keys' elements (f32, f16, q8_0); default --kv-type")
      ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  app.add_option("--cache-type-v", o.cache_type_v,
                 "llama.cpp's -ctv: the values' elements (f32, f16, q8_0); default --kv-type")
      ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  app.add_flag("--parse-special-in-content", o.parse_special_in_content,
               "chat: parse special-token text inside messages into control tokens, as "
               "transformers does (default: plain text, so messages cannot forge turns)");
  add_limit_options(app, o);
  add_template_limit_options(app, o.template_limits);
  app.add_option("--mmproj", o.mmproj, "llama.cpp mmproj GGUF (image encoder) for a text GGUF");
  app.add_option("--allowed-local-media-path", o.image_urls.local_folder,
                 "image_url parts may name file:// images inside this folder (default: none)");
  app.add_option("--max-image-pixels", o.image_urls.limits.max_pixels,
                 "largest width x height of an image, checked before decoding (400)")
      ->capture_default_str();
  app.add_option("--max-audio-bytes", o.input_audio.max_bytes,
                 "largest decoded input_audio part (wav/mp3 bytes); larger: 413")
      ->capture_default_str();
  app.add_option("--max-video-bytes", o.video_urls.max_bytes,
                 "largest decoded video_url part (data URL bytes); larger: 413")
      ->capture_default_str();
  app.add_option("--encoder-cache-mb", o.encoder_cache_mb,
                 "image and audio encoder outputs kept by content hash, in MiB")
      ->capture_default_str();
  app.add_option("--whisper-model", o.whisper_model,
                 "Whisper HF folder for /v1/audio/transcriptions and /v1/audio/translations");
  app.add_option("--max-audio-seconds", o.max_audio_seconds,
                 "longest audio the audio endpoints accept (413)")
      ->capture_default_str();
  app.add_flag("--embeddings", o.embeddings,
               "also serve /v1/embeddings for a decoder LM (its final hidden states, from a "
               "second instance of the model); encoder models (BertModel) always serve it");
  app.add_option("--pooling", o.pooling,
                 "embeddings: mean, cls or last (default: the folder's sentence-transformers "
                 "config; else mean for encoders, last for decoders)")
      ->check(CLI::IsMember({"mean", "cls", "last"}));
  app.add_option("--shutdown-grace", o.shutdown_grace_seconds,
                 "SIGTERM/SIGINT: seconds until exit; in-flight requests may finish until 1 s "
                 "before")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  // llama-server's -ctk / -ctv (CLI11 would read "-ctk" as "-c tk").
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "-ctk") args[i] = "--cache-type-k";
    if (args[i] == "-ctv") args[i] = "--cache-type-v";
  }
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  CLI11_PARSE(app, static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  try {
    if (!key_file.empty()) o.api_key = af::server::read_api_key_file(key_file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[af-server] error: %s\n", e.what());
    return 1;
  }
  if (o.api_key.empty()) {
    if (const char* env = std::getenv("AF_API_KEY")) o.api_key = env;
  }
  return af::server::run_server(o);
}
