// af-server -m PATH [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx-size N]
//           [--api-key KEY] [--threads N] [--kv-type f32|f16] [--shutdown-grace S]
// An OpenAI-compatible HTTP server (see docs/SERVER.md).
#include <CLI/CLI.hpp>

#include "server.hpp"

int main(int argc, char** argv) {
  af::server::ServerOptions o;
  CLI::App app{"af-server: OpenAI-compatible HTTP server with continuous batching"};
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
  app.add_option("--api-key", o.api_key, "require 'Authorization: Bearer KEY'");
  app.add_option("-t,--threads", o.threads, "compute threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-type", o.kv_type, "KV cache elements: f32 (exact, default) or f16")
      ->check(CLI::IsMember({"f32", "f16"}));
  app.add_option("--shutdown-grace", o.shutdown_grace_seconds,
                 "SIGTERM/SIGINT: seconds until exit; in-flight requests may finish until 1 s "
                 "before")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return af::server::run_server(o);
}
