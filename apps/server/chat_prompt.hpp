#pragma once
// Chat messages to prompt text.
#include <string>
#include <vector>

#include "api.hpp"

namespace af::server {

// ChatML (<|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n), the format
// af-server uses when the model ships no chat template of its own.
std::string render_chatml(const std::vector<ChatMessage>& messages);

}  // namespace af::server
