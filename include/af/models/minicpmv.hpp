#pragma once
// MiniCPM-V 2.6's prompt expansion (MiniCPMVProcessor's text side): each "(<image>./</image>)" of
// a prompt is replaced by the placeholder text of the image in that position
// (af::modalities::minicpmv_placeholder: image id, "<image>" + unk * query_num + "</image>",
// slice rows), and the whole text is tokenized as the processor tokenizes it (special tokens
// added). The "<unk>" ids of the result are the rows MiniCPMV's image encoder fills, in order.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "af/modalities/image.hpp"
#include "af/modalities/minicpmv_processor.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af::models {

// Throws af::Error kInvalidArgument when the prompt's "(<image>./</image>)" tags and `images`
// differ in number.
std::vector<int32_t> minicpmv_prompt_ids(const tok::Tokenizer& tokenizer,
                                         const modalities::MiniCPMVConfig& config,
                                         std::string_view text,
                                         std::span<const modalities::Image> images);

}  // namespace af::models
