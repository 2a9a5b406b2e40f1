#pragma once
// The OpenAI request bodies af-server accepts, parsed and validated into plain structs, and the
// error object it answers with. No HTTP and no model here, so the parser can be unit-tested and
// fuzzed on its own.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/ops/sampling.hpp"

namespace af::server {

// An answer other than 200: HTTP status plus OpenAI's {"error": {message, type, param, code}}.
struct ApiError : std::exception {
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::string param = {}, std::string code = {})
      : status(status),
        message(std::move(message)),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  const char* what() const noexcept override { return message.c_str(); }

  int status;
  std::string message;
  std::string type;
  std::string param;  // empty: null
  std::string code;   // empty: null
};

nlohmann::json error_body(const ApiError& error);

enum class Endpoint { kChatCompletions, kCompletions };

struct ChatMessage {
  std::string role;     // system, developer, user, assistant, tool
  std::string content;  // text parts joined
  // The urls of "image_url" parts, in order (the server decodes them: image_url.hpp), and where
  // each sat: the bytes of text given before it (the chat template gets the parts in order).
  std::vector<std::string> image_urls = {};
  std::vector<size_t> image_offsets = {};
  // "input_audio" parts ({"data": base64, "format": "wav" | "mp3"}, decoded by the server:
  // input_audio.hpp) and where each sat, as image_offsets.
  struct InputAudio {
    std::string data, format;
  };
  std::vector<InputAudio> audios = {};
  std::vector<size_t> audio_offsets = {};
  // The urls of "video_url" parts (base64 data URLs, decoded by the server: video_url.hpp) and
  // where each sat, as image_offsets.
  std::vector<std::string> video_urls = {};
  std::vector<size_t> video_offsets = {};
  nlohmann::json tool_calls = nullptr;  // assistant: OpenAI's tool_calls array, as sent
  std::string tool_call_id = {};        // tool: the call this message answers
  std::string name = {};                // optional participant / function name
};

struct ApiLimits {
  int max_n = 16;           // choices per request
  int max_stop = 4;         // stop strings, as OpenAI
  int max_prompts = 16;     // prompts in one /v1/completions request
  int max_json_depth = 64;  // nesting of the request body
  // Values (numbers, strings, arrays, objects) in the request body: 16 prompts of 64k token
  // ids fit; a body of a million tiny objects does not.
  size_t max_json_elements = size_t{1} << 20;
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  std::string model;
  std::vector<ChatMessage> messages;             // chat
  std::vector<std::string> prompt_texts;         // completions, prompts given as text ...
  std::vector<std::vector<int32_t>> prompt_ids;  // ... or as token ids (one of the two)
  int64_t max_tokens = -1;                       // -1: until EOS, stop or a full context
  ops::SamplingParams sampling;                  // temperature defaults to 1, as OpenAI
  bool has_seed = false;
  std::vector<std::string> stop;
  int n = 1;
  bool logprobs = false;  // report the chosen tokens' logprobs (sampling.top_logprobs: how many
                          // alternatives)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool json_object = false;    // response_format {"type": "json_object"}
  // response_format {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}: the
  // schema (an empty object when none was given); null otherwise. structured.hpp compiles it.
  nlohmann::json json_schema = nullptr;
  // Function calling: tools as sent ([{"type": "function", "function": {"name", ...}}], checked),
  // null when none; tool_choice "none", "auto", "required" or "function" (tool_choice_name).
  nlohmann::json tools = nullptr;
  std::string tool_choice = "auto";
  std::string tool_choice_name;
  bool parallel_tool_calls = true;
};

// Parses and validates a request body. Throws ApiError (400) naming the field at fault; the HTTP
// layer limits the body size. Fields af-server does not use (user, store, metadata, tools, ...)
// and unknown fields are ignored, as llama.cpp's and vLLM's servers do, so that clients sending
// newer or vendor fields keep working.
ApiRequest parse_request(Endpoint endpoint, std::string_view body, const ApiLimits& limits = {});

// A request body that must be one JSON object, within `max_depth` nesting and `max_elements`
// values; anything else is ApiError 400 "invalid_json". Shared by every endpoint taking a body.
nlohmann::json parse_json_body(std::string_view body, int max_depth, size_t max_elements);

}  // namespace af::server
