// af-server's HTTP front without sockets: the end of a request head found under its size and line
// budget (431 beyond it), the Bearer scheme in any case, and API key files.
#include "http_guard.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "af/core/error.hpp"

namespace af::server {
namespace {

HeadStatus scan_all(HeadScanner& scanner, const std::string& text) { return scanner.scan(text); }

// Feeds `text` one byte at a time, as a slow client sends it; returns the first final status.
HeadStatus scan_bytewise(HeadScanner& scanner, const std::string& text) {
  std::string buffer;
  for (char c : text) {
    buffer.push_back(c);
    const HeadStatus s = scanner.scan(buffer);
    if (s != HeadStatus::kIncomplete) return s;
  }
  return HeadStatus::kIncomplete;
}

TEST(HttpHeadScanner, FindsTheBlankLineWithCrlfOrBareLf) {
  const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n";
  HeadScanner crlf({});
  ASSERT_EQ(scan_all(crlf, head + "{}"), HeadStatus::kComplete);
  EXPECT_EQ(crlf.head_size(), head.size());
  EXPECT_EQ(crlf.header_lines(), 2u);

  const std::string lf = "GET /health HTTP/1.1\nHost: x\n\n";
  HeadScanner bare({});
  ASSERT_EQ(scan_all(bare, lf), HeadStatus::kComplete);
  EXPECT_EQ(bare.head_size(), lf.size());
}

TEST(HttpHeadScanner, IncompleteUntilTheBlankLineArrives) {
  HeadScanner scanner({});
  EXPECT_EQ(scanner.scan("GET / HTTP/1.1\r\nHost: x\r\n"), HeadStatus::kIncomplete);
  EXPECT_EQ(scanner.scan("GET / HTTP/1.1\r\nHost: x\r\n\r"), HeadStatus::kIncomplete);
  EXPECT_EQ(scanner.scan("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), HeadStatus::kComplete);
}

TEST(HttpHeadScanner, ByteAtATimeGivesTheSameHead) {
  const std::string head = "GET /v1/models HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
  HeadScanner scanner({});
  ASSERT_EQ(scan_bytewise(scanner, head), HeadStatus::kComplete);
  EXPECT_EQ(scanner.head_size(), head.size());
  EXPECT_EQ(scanner.header_lines(), 2u);
}

TEST(HttpHeadScanner, SkipsBlankLinesBeforeTheRequestLine) {
  const std::string text = "\r\n\nGET / HTTP/1.1\r\n\r\n";
  HeadScanner scanner({});
  ASSERT_EQ(scan_all(scanner, text), HeadStatus::kComplete);
  EXPECT_EQ(scanner.skipped(), 3u);
  EXPECT_EQ(scanner.head_size(), text.size());

  // Blank lines cost memory too: an endless run of them is over the budget.
  HeadScanner endless({64, 100});
  EXPECT_EQ(scan_bytewise(endless, std::string(100, '\n')), HeadStatus::kTooLarge);
}

TEST(HttpHeadScanner, TooManyHeaderLinesIs431) {
  const HeadLimits limits{1 << 20, 3};
  std::string head = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 3; ++i) head += "X-" + std::to_string(i) + ": y\r\n";
  HeadScanner at_limit(limits);
  EXPECT_EQ(scan_all(at_limit, head + "\r\n"), HeadStatus::kComplete);

  HeadScanner over(limits);
  EXPECT_EQ(scan_bytewise(over, head + "X-3: y\r\n\r\n"), HeadStatus::kTooLarge);
}

TEST(HttpHeadScanner, TooManyBytesIs431EvenWithoutALineEnd) {
  const HeadLimits limits{64, 100};
  const std::string fits = "GET / HTTP/1.1\r\nX: " + std::string(64 - 16 - 5 - 2, 'y') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), 64u);
  HeadScanner at_limit(limits);
  EXPECT_EQ(scan_all(at_limit, fits), HeadStatus::kComplete);

  HeadScanner long_line(limits);
  EXPECT_EQ(scan_all(long_line, "GET / HTTP/1.1\r\nX: " + std::string(100, 'y')),
            HeadStatus::kTooLarge);
  HeadScanner one_more(limits);
  EXPECT_EQ(scan_bytewise(one_more,
                          "GET / HTTP/1.1\r\nX: " + std::string(64 - 16 - 5 - 1, 'y') + "\r\n\r\n"),
            HeadStatus::kTooLarge);
}

TEST(HttpAuth, BearerSchemeIsCaseInsensitive) {
  EXPECT_TRUE(bearer_key_matches("Bearer sekret", "sekret"));
  EXPECT_TRUE(bearer_key_matches("bearer sekret", "sekret"));
  EXPECT_TRUE(bearer_key_matches("BEARER \t sekret  ", "sekret"));
}

TEST(HttpAuth, WrongKeysAndSchemesAreRefused) {
  EXPECT_FALSE(bearer_key_matches("", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Bearer", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Bearersekret", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Basic sekret", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Bearer sekre", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Bearer sekrets", "sekret"));
  EXPECT_FALSE(bearer_key_matches("Bearer Sekret", "sekret"));
}

TEST(HttpAuth, KeyFileFirstLineWithoutSurroundingSpace) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path =
      (dir /
       ("af_key_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + ".txt"))
          .string();
  std::ofstream(path) << "  sekret \r\nsecond line\n";
  EXPECT_EQ(read_api_key_file(path), "sekret");
  std::ofstream(path) << "\n";
  try {
    read_api_key_file(path);
    ADD_FAILURE() << "empty key file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  try {
    read_api_key_file(path);
    ADD_FAILURE() << "missing key file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af::server
