// libFuzzer target: tokenizer.json loading on arbitrary bytes. The input is written to a
// temporary file (the loader reads paths) and loaded; anything malformed must raise af::Error.
// A file that loads must then encode a fixed text and decode the result without failing.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

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
  } catch (const af::Error&) {
  }
  return 0;
}
