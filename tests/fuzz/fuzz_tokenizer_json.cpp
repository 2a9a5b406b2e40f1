// libFuzzer target: tokenizer.json loading on arbitrary bytes. The input is written to a
// temporary file (the loader reads paths) and loaded; anything malformed must raise af::Error.
// A file that loads must then encode a fixed text and decode the result without failing, and
// encode long runs of each character class within a time bound: a hostile vocabulary (one
// very long entry) or split / Replace regex (catastrophic backtracking) must not make the
// work blow up (the corpus has such files).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = std::filesystem::temp_directory_path().string() +
                                  "/af_fuzz_tokenizer_json_" + std::to_string(getpid()) + ".json";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto tok = af::tok::Tokenizer::load(path);
    try {
      const auto ids = tok->encode("Hello world, 123 héllo <s> \xF0\x9F\x98\x80", true);
      (void)tok->decode(ids, false);
    } catch (const af::Error&) {
      // e.g. WordPiece / Unigram without an unk token for an unknown character
    }
    // Time oracle: 4 KB of runs (digits, letters, spaces, punctuation, and the file's
    // first bytes) in well under a second in a Release build; 5 s leaves room for sanitizers.
    std::string runs;
    for (std::string_view unit : {"1", "a", " ", "!", "\n", "ab1 "})
      for (size_t k = 0; k < 600; k += unit.size()) runs += unit;
    runs.append(reinterpret_cast<const char*>(data), std::min<size_t>(size, 400));
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)tok->encode(runs, false);
    } catch (const af::Error&) {
      // invalid UTF-8 from the file's bytes, a missing unk token, the regex work budget
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 5.0) {
      std::fprintf(stderr, "encoding 4 KB took %.1f s\n", seconds);
      std::abort();
    }
  } catch (const af::Error&) {
  }
  return 0;
}
