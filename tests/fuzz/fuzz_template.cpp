// libFuzzer target: any byte string as a chat template must parse and render with a small fixed
// context or raise af::Error; crashes, hangs, leaks, sanitizer reports and other exception types
// are bugs. Tight limits keep every input fast.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi ☃ <b>"},
      {"role": "assistant", "content": "Hello", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [1.5, null, true]}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\": true}"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "date_string": "26 Jul 2024"
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  af::tok::TemplateLimits limits;
  limits.max_steps = 200000;
  limits.max_string_bytes = 1 << 20;
  limits.max_depth = 200;
  try {
    const auto chat_template = af::tok::ChatTemplate::parse(source, "fuzz");
    (void)chat_template.render(context(), limits);
  } catch (const af::Error&) {
  }
  return 0;
}
