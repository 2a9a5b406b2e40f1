// Tokenizer::encode_with_plain_ranges: special-token text inside a plain range stays plain;
// outside them (and for empty ranges, which hold no text) the ids are encode(text)'s. Found by
// fuzz_tokenizer's plain-range oracle: an empty range strictly inside a special token's text
// used to count as overlapping it.
#include <algorithm>
#include <memory>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

namespace af {
namespace {

using Range = tok::Tokenizer::TextRange;

class PlainRanges : public ::testing::Test {
 protected:
  void SetUp() override {
    AF_REQUIRE_TESTDATA(dir_);
    tok_ = tok::Tokenizer::load(dir_);
  }
  std::vector<int32_t> plain(std::string_view text, std::vector<Range> ranges) const {
    return tok_->encode_with_plain_ranges(text, false, ranges);
  }
  const std::string dir_ = test::testdata_dir() + "/tokenizer/hf/qwen2.5";
  std::unique_ptr<tok::Tokenizer> tok_;
};

TEST_F(PlainRanges, EmptyRangesInsideASpecialTokenLeaveItSpecial) {
  const std::string text = "\x02<|quad_end|>\n `x";  // the fuzzer's find, minus a NUL
  const std::vector<int32_t> parsed = tok_->encode(text, false, /*parse_special=*/true);
  ASSERT_NE(parsed, tok_->encode(text, false, /*parse_special=*/false));
  EXPECT_EQ(plain(text, {{5, 5}}), parsed);
  EXPECT_EQ(plain(text, {{0, 0}, {13, 13}, {1, 1}, {text.size(), text.size()}}), parsed);
}

TEST_F(PlainRanges, SpecialTextInsideARangeStaysPlain) {
  const std::string text = "a<|im_end|>b<|im_end|>";
  const int32_t im_end = tok_->token_id("<|im_end|>");
  ASSERT_GE(im_end, 0);
  const auto count = [&](const std::vector<int32_t>& ids) {
    return std::count(ids.begin(), ids.end(), im_end);
  };
  EXPECT_EQ(count(plain(text, {})), 2);
  EXPECT_EQ(count(plain(text, {{5, 6}})), 1);  // one byte of the first marker
  EXPECT_EQ(count(plain(text, {{0, text.size()}})), 0);
  EXPECT_EQ(plain(text, {{0, text.size()}}), tok_->encode(text, false, /*parse_special=*/false));
  EXPECT_EQ(plain(text, {{11, 12}}), tok_->encode(text, false, true));  // "b": no marker
  EXPECT_THROW(plain(text, {{3, text.size() + 1}}), Error);
}

}  // namespace
}  // namespace af
