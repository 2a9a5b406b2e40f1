#pragma once
// Chat templates: a Jinja2 engine that renders Hugging Face chat templates the way transformers'
// apply_chat_template does (trim_blocks, lstrip_blocks, no kept trailing newline, loop controls,
// the globals raise_exception / strftime_now / namespace / range / dict, HF's tojson).
// Supported syntax and known differences: docs/CHAT_TEMPLATES.md.
// All errors are af::Error with component "template"; they name the origin, line and column.
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace af::tok {

namespace jinja {
struct Program;
}

// Bounds that turn runaway templates (endless recursion, exponential strings, huge loops, quadratic
// searches) into af::Error instead of hangs or exhausted memory; every operation is charged by the
// work it does (docs/CHAT_TEMPLATES.md, "Errors and limits"). The defaults are far above what real
// chat templates need.
struct TemplateLimits {
  size_t max_string_bytes = size_t{32} << 20;  // any one string, the output included
  // Work: one step per expression/statement evaluated, per container element created or visited
  // (iterating, printing, comparing), and per 64 bytes built, copied, decoded, scanned or compared.
  uint64_t max_steps = 5'000'000;
  // Bytes of strings and container slots the rendering creates, output included, counted
  // cumulatively: an upper bound on the memory its values hold at any time.
  uint64_t max_memory_bytes = uint64_t{256} << 20;
  int max_depth = 400;  // nested evaluation, macro recursion included
};

class ChatTemplate {
 public:
  // Parses once. Syntax errors throw af::Error (kFormat) naming origin:line:column.
  static ChatTemplate parse(std::string source, std::string origin = "<template>");

  // Renders with the context's keys as the template's variables (messages, add_generation_prompt,
  // bos_token, eos_token, tools, date_string, ...). Keys keep their order (Python dicts do), which
  // matters for tojson and for iterating dicts; prefer the ordered_json overload. A key that is
  // absent stays undefined (`is defined` is false), as in Jinja. raise_exception("msg") and all
  // runtime errors (undefined attribute access, type errors) throw af::Error (kInvalidArgument)
  // whose message ends with the template's text, e.g. "...: boom"; an exceeded TemplateLimits
  // budget throws kOutOfRange naming the field, e.g. "(TemplateLimits::max_steps)".
  // strftime_now uses the real local clock. const and thread-safe: every call renders with its
  // own state over the shared, immutable parsed template.
  std::string render(const nlohmann::ordered_json& context,
                     const TemplateLimits& limits = {}) const;
  std::string render(const nlohmann::json& context, const TemplateLimits& limits = {}) const;

  const std::string& origin() const;
  const std::string& source() const;

 private:
  explicit ChatTemplate(std::shared_ptr<const jinja::Program> program);
  std::shared_ptr<const jinja::Program> program_;
};

// The chat template a model ships: GGUF metadata tokenizer.chat_template, an HF folder's
// chat_template.jinja, or tokenizer_config.json's chat_template (a string, or a list of
// {name, template} where "default" is chosen). `model_path` is a .gguf file, an HF folder or a
// tokenizer_config.json. A Gemma-family GGUF without a template gets Gemma's own (the one
// google/gemma-3-*-it ship). std::nullopt if the model has none; af::Error when a file is
// unreadable or malformed.
std::optional<std::string> find_chat_template(const std::string& model_path);

}  // namespace af::tok
