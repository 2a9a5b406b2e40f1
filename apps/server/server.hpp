#pragma once
// af-server: an OpenAI-compatible HTTP server over one model, with continuous batching.
#include <cstddef>
#include <cstdint>
#include <string>

#include "af/tokenizer/chat_template.hpp"
#include "http_guard.hpp"
#include "image_url.hpp"

namespace af::server {

struct ServerOptions {
  std::string model_path;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;                    // slots generating together
  int64_t ctx_size = 0;                // KV cache rows per slot; 0: the model's context
  std::string api_key;                 // empty: no authentication
  int threads = 0;                     // compute threads; 0: all cores
  std::string kv_type = "f32";         // KV cache elements: f32 (exact), f16, q8_0
  size_t max_body = 8 << 20;           // bytes after decoding, whatever the framing; else 413
  FrontLimits front;                   // connections, header size, timeouts
  double shutdown_grace_seconds = 10;  // SIGTERM: exit by then; requests run until 1 s before
  // Chat: special-token text inside messages becomes control tokens (transformers' behaviour).
  bool parse_special_in_content = false;
  tok::TemplateLimits template_limits;  // chat-template budgets; exceeded: 500
  // -ctk / -ctv: the keys' / values' elements apart (f32, f16, q8_0); empty: kv_type.
  std::string cache_type_k, cache_type_v;
  // Multimodal models: an mmproj GGUF beside a text GGUF; image_url parts (data URLs; file://
  // only inside image_urls.local_folder; pixel limit); encoder-output cache bound in MiB.
  std::string mmproj;
  ImageUrlOptions image_urls;
  uint64_t encoder_cache_mb = 256;
};

// Loads the model, serves until SIGTERM or SIGINT, then shuts down gracefully. Returns the exit
// code (0 after a signal, 1 when the model cannot be loaded or the address cannot be bound).
int run_server(const ServerOptions& options);

}  // namespace af::server
