// Encode throughput of af::tok on a text file, in MB/s of input UTF-8.
//
//   tokenizer_bench --tokenizer PATH --text FILE [--threads N] [--repeat R] [--doc-bytes B]
//
// The text is cut into documents of about B bytes (default 4096) at line ends; each document is
// encoded without special tokens. With N threads the documents are shared out round-robin,
// like HF's encode_batch. Prints one line: tokens, bytes, best seconds of R runs, MB/s.
// bench/tokenizer/tokenizer_vs_hf.py runs this and HF tokenizers on the same text.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace {

std::vector<std::string> split_documents(const std::string& text, size_t doc_bytes) {
  std::vector<std::string> docs;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = std::min(text.size(), begin + doc_bytes);
    const size_t nl = text.find('\n', end);
    end = nl == std::string::npos ? text.size() : nl + 1;
    docs.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return docs;
}

int usage() {
  std::fprintf(stderr,
               "usage: tokenizer_bench --tokenizer PATH --text FILE [--threads N] [--repeat R] "
               "[--doc-bytes B]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path, text_path;
  int threads = 1, repeat = 3;
  size_t doc_bytes = 4096;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--tokenizer") {
      tokenizer_path = v;
    } else if (a == "--text") {
      text_path = v;
    } else if (a == "--threads") {
      threads = std::max(1, std::atoi(v));
    } else if (a == "--repeat") {
      repeat = std::max(1, std::atoi(v));
    } else if (a == "--doc-bytes") {
      doc_bytes = std::max(1, std::atoi(v));
    } else {
      return usage();
    }
  }
  if (tokenizer_path.empty() || text_path.empty()) return usage();
  try {
    const auto tok = af::tok::Tokenizer::load(tokenizer_path);
    std::ifstream in(text_path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", text_path.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const std::vector<std::string> docs = split_documents(text, doc_bytes);

    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < repeat; ++r) {
      std::vector<size_t> counts(threads, 0);
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          for (size_t d = t; d < docs.size(); d += threads)
            counts[t] += tok->encode(docs[d], /*add_special=*/false).size();
        });
      }
      for (auto& th : pool) th.join();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
      tokens = 0;
      for (size_t c : counts) tokens += c;
    }
    std::printf("tokens=%zu bytes=%zu docs=%zu threads=%d seconds=%.4f MB/s=%.2f\n", tokens,
                text.size(), docs.size(), threads, best, text.size() / best / 1e6);
  } catch (const af::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
