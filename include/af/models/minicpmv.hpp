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

// The id form of the same expansion, for entry points that tokenize before placing images
// (sessions, the scheduler, the server's chat, af-cli logits): each "<unk>" (the processor's
// unk token) standing alone once per image becomes the ids of that image's placeholder. Equal
// to minicpmv_prompt_ids of the text with the "<unk>"s as tags, since the placeholder starts and
// ends with special tokens, which cut the text into pieces tokenized apart. Ids that already
// hold the expansion (every image's rows, each piece's run of image_feature_size "<unk>"s between
// its "<image>"/"<slice>" and closing tokens) are returned as is. Throws af::Error
// kInvalidArgument (component "minicpmv") for any other prompt with images: no placeholder, a
// count that fits neither form, bare runs without their markup.
std::vector<int32_t> minicpmv_expand_ids(const tok::Tokenizer& tokenizer,
                                         const modalities::MiniCPMVConfig& config,
                                         std::span<const int32_t> ids,
                                         std::span<const modalities::Image> images);

}  // namespace af::models
