// Stop strings over streamed text: nothing of a stop string is ever released, text that cannot
// start one is released at once.
#include <gtest/gtest.h>

#include "af/core/error.hpp"
#include "runtime/stop_strings.hpp"

namespace af::runtime {
namespace {

TEST(StopStrings, ReleasesTextThatCannotStartAStop) {
  StopStringFilter f({"END"});
  EXPECT_EQ(f.push("hello "), "hello ");
  EXPECT_EQ(f.push("wor"), "wor");
  EXPECT_EQ(f.push("ld E"), "ld ");  // "E" may begin "END"
  EXPECT_EQ(f.push("x"), "Ex");
  EXPECT_FALSE(f.matched());
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStrings, StopSpanningPushesIsCutAndNotShown) {
  StopStringFilter f({"</s>", "###"});
  std::string shown;
  for (const char* piece : {"The end", ".<", "/", "s> more"}) shown += f.push(piece);
  EXPECT_EQ(shown, "The end.");
  EXPECT_TRUE(f.matched());
  EXPECT_EQ(f.matched_string(), "</s>");
  EXPECT_EQ(f.push("after"), "");
}

TEST(StopStrings, EarliestOccurrenceWins) {
  StopStringFilter f({"cd", "bcx"});
  EXPECT_EQ(f.push("abcd"), "ab");
  EXPECT_EQ(f.matched_string(), "cd");
  StopStringFilter g({"cd", "bc"});
  EXPECT_EQ(g.push("abcd"), "a");
  EXPECT_EQ(g.matched_string(), "bc");
}

TEST(StopStrings, HeldPrefixIsFlushedAtTheEnd) {
  StopStringFilter f({"\n\nUser:"});
  EXPECT_EQ(f.push("Answer.\n\nUs"), "Answer.");
  EXPECT_EQ(f.flush(), "\n\nUs");
}

TEST(StopStrings, MultiByteCharactersStayWhole) {
  StopStringFilter f({"日本語"});
  EXPECT_EQ(f.push("今日は日本"), "今日は");
  EXPECT_EQ(f.push("です"), "日本です");
  StopStringFilter g({"語"});
  EXPECT_EQ(g.push("日本語です"), "日本");
}

TEST(StopStrings, NoStopsReleasesEverything) {
  StopStringFilter f({});
  EXPECT_EQ(f.push("abc"), "abc");
  EXPECT_FALSE(f.matched());
}

TEST(StopStrings, EmptyStopStringIsRejected) { EXPECT_THROW(StopStringFilter({"ok", ""}), Error); }

}  // namespace
}  // namespace af::runtime
