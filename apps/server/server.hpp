#pragma once
// af-server: an OpenAI-compatible HTTP server over one model, with continuous batching.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "af/tokenizer/chat_template.hpp"
#include "http_guard.hpp"
#include "image_url.hpp"
#include "input_audio.hpp"
#include "video_url.hpp"

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
  // Audio-language models: input_audio parts (decoded size limit, else 413; duration bounds).
  InputAudioOptions input_audio;
  // video_url parts (base64 data URLs; decoded size limit, else 413; sampling and limits).
  VideoUrlOptions video_urls;
  uint64_t encoder_cache_mb = 256;
  bool web_ui = true;  // the chat page at / (--no-webui turns it off)
  // llama-server habits: the model id clients see (default: the file or folder name), a chat
  // template file replacing the model's, origins allowed to call from a browser (empty: CORS
  // off; "*" any), an access log ("" off, "-" stderr, else a file appended to) and whether its
  // lines carry the prompt text.
  std::string alias;
  std::string chat_template_file;
  std::vector<std::string> cors_origins;
  std::string access_log;
  bool log_prompts = false;
  // /v1/audio/transcriptions and /translations: a Whisper HF folder (empty: not served) and the
  // longest audio accepted (413 beyond).
  std::string whisper_model;
  double max_audio_seconds = 1800;
  // /v1/embeddings: always for an encoder (BertModel; then the only endpoint that computes);
  // for a decoder LM with --embeddings (its hidden states, from a second instance of the
  // model). pooling: "" (the folder's sentence-transformers config), mean, cls or last.
  bool embeddings = false;
  std::string pooling;
};

// Loads the model, serves until SIGTERM or SIGINT, then shuts down gracefully. Returns the exit
// code (0 after a signal, 1 when the model cannot be loaded or the address cannot be bound).
int run_server(const ServerOptions& options);

}  // namespace af::server
