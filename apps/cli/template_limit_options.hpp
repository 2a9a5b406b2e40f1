#pragma once
// The chat-template budget flags `chat` and `template` share (af-server has the same ones);
// the defaults are TemplateLimits' (docs/CHAT_TEMPLATES.md, "Errors and limits").
#include <cstdint>

#include <CLI/CLI.hpp>

#include "af/tokenizer/chat_template.hpp"

namespace af::cli {

inline void add_template_limit_options(CLI::App& sub, tok::TemplateLimits& limits) {
  sub.add_option("--template-max-steps", limits.max_steps,
                 "chat template: evaluation steps per rendering")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub.add_option("--template-max-memory", limits.max_memory_bytes,
                 "chat template: bytes of values one rendering may create")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub.add_option("--template-max-string-bytes", limits.max_string_bytes,
                 "chat template: bytes of any one string, the output included")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub.add_option("--template-max-depth", limits.max_depth,
                 "chat template: nested evaluation depth (macro recursion included)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
}

}  // namespace af::cli
