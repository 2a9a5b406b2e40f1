// What `-m PATH` may name (issue 18): a .safetensors file gives the folder's tokenizer too (run,
// chat, tokenize and af-server used to read it as tokenizer.json: "invalid JSON"), the first
// bytes decide a file's format whatever its name, and anything else is "unrecognised model
// format" naming what was expected. Also LoadOptions::on_progress, which the CLI's bar reads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/model_files.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "unit/io_test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

fs::path stories_hf() { return io::test::testdata_dir() / "models/stories260K-hf"; }
fs::path stories_gguf() { return io::test::testdata_dir() / "models/stories260K/stories260K.gguf"; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    return e.what();
  }
  return "(no error)";
}

TEST(ModelPathFormats, SafetensorsFileLoadsTheTokenizerBesideIt) {
  if (!fs::exists(stories_hf())) GTEST_SKIP() << "no test data";
  const auto folder = tok::Tokenizer::load(stories_hf().string());
  const auto file = tok::Tokenizer::load((stories_hf() / "model.safetensors").string());
  EXPECT_EQ(file->encode("Once upon a time", true), folder->encode("Once upon a time", true));
  EXPECT_EQ(models::open_model_files((stories_hf() / "model.safetensors").string()).format,
            "safetensors");
}

TEST(ModelPathFormats, FirstBytesDecideTheFormat) {
  if (!fs::exists(stories_gguf())) GTEST_SKIP() << "no test data";
  io::test::TempDir dir;
  const fs::path renamed = dir.path() / "stories.bin";
  fs::copy_file(stories_gguf(), renamed);
  EXPECT_EQ(io::sniff_file_format(renamed.string()), "gguf");
  EXPECT_EQ(io::sniff_file_format((stories_hf() / "model.safetensors").string()), "safetensors");
  EXPECT_EQ(io::sniff_file_format((stories_hf() / "tokenizer.json").string()), "json");
  EXPECT_EQ(io::sniff_file_format(stories_hf().string()), "");
  EXPECT_EQ(models::open_model_files(renamed.string()).format, "gguf");
  EXPECT_EQ(tok::Tokenizer::load(renamed.string())->encode("Once upon a time", true),
            tok::Tokenizer::load(stories_gguf().string())->encode("Once upon a time", true));
}

TEST(ModelPathFormats, OtherFilesAreAnUnrecognisedModelFormat) {
  io::test::TempDir dir;
  const fs::path notes = dir.path() / "notes.txt";
  std::ofstream(notes) << "# not a model\n";
  EXPECT_EQ(io::sniff_file_format(notes.string()), "");
  for (const std::string& msg : {error_of([&] { models::open_model_files(notes.string()); }),
                                 error_of([&] { tok::Tokenizer::load(notes.string()); })}) {
    EXPECT_NE(msg.find("unrecognised model format"), std::string::npos) << msg;
    EXPECT_NE(msg.find("notes.txt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GGUF"), std::string::npos) << msg;  // what was expected
    EXPECT_EQ(msg.find("invalid JSON"), std::string::npos) << msg;
  }
}

TEST(ModelPathFormats, LoadReportsProgressUpToTheTotal) {
  if (!fs::exists(stories_gguf())) GTEST_SKIP() << "no test data";
  models::LoadOptions options;
  std::vector<std::pair<int64_t, int64_t>> calls;
  options.on_progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  models::load(stories_gguf().string(), options);
  ASSERT_EQ(calls.size(), 7u);  // the embedding, 5 layers, the head
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].first, static_cast<int64_t>(i + 1));
    EXPECT_EQ(calls[i].second, 7);
  }
}

}  // namespace
}  // namespace af
