// The per-token cost of constrained decoding: JsonMatcher::fill_mask over a tokenizer's whole
// vocabulary (a 151,665-token Qwen2.5 one in tests/testdata), at typical points of a document.
//
//   json_mask_bench --tokenizer PATH [--repeat R]
//
// Prints the time to build the vocabulary index once, then one line per point: microseconds
// per mask (best mean of 3 rounds of R masks) and how many tokens were allowed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "af/runtime/json_schema.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "runtime/json_matcher.hpp"

namespace {

using Clock = std::chrono::steady_clock;

const char* kSchema = R"({"type": "object", "properties": {
    "name": {"type": "string"}, "city": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150}, "score": {"type": "number"},
    "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}},
    "born": {"type": "string", "format": "date"},
    "extra": {"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "integer"}]}},
    "required": ["name", "age"]})";

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int repeat = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokenizer") path = argv[i + 1];
    if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
  }
  if (path.empty()) {
    std::fprintf(stderr, "usage: json_mask_bench --tokenizer PATH [--repeat R]\n");
    return 2;
  }
  const auto tokenizer = af::tok::Tokenizer::load(path);
  std::vector<std::string> vocab(tokenizer->vocab_size());
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    if (tokenizer->is_assigned(id) && !tokenizer->is_special(id)) {
      vocab[id] = tokenizer->token_bytes(id, false);
    }
  }
  auto t0 = Clock::now();
  const af::runtime::VocabIndex index(vocab);
  std::printf("vocab %zu tokens, index built in %.1f ms (once per tokenizer)\n", vocab.size(),
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  const auto grammar = af::runtime::compile_json_schema_text(kSchema);
  const char* points[] = {
      "",                                       // before the document
      "{",                                      // a key or the end
      "{\"name\": \"Ali",                       // inside a plain string
      "{\"city\": \"Par",                       // inside a string with maxLength
      "{\"name\": \"Al\", \"age\": 4",          // inside a bounded integer
      "{\"name\": \"Al\", \"score\": 0.5",      // inside a number
      "{\"name\": \"Al\", \"tags\": [\"re",     // inside an enum
      "{\"name\": \"Al\", \"born\": \"2024-0",  // inside a date
      "{\"name\": \"Al\", \"extra\": ",         // before an anyOf value
      "{\"name\": \"Al\", \"age\": 40",         // after a value: ',' '}' or digits
  };
  std::vector<uint8_t> allowed;
  for (const char* point : points) {
    af::runtime::JsonMatcher m(grammar);
    if (!m.push(std::string_view(point))) {
      std::fprintf(stderr, "prefix refused: %s\n", point);
      return 1;
    }
    double best = 1e30;
    for (int round = 0; round < 3; ++round) {
      t0 = Clock::now();
      for (int r = 0; r < repeat; ++r) m.fill_mask(index, allowed);
      const double us =
          std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / repeat;
      best = std::min(best, us);
    }
    size_t n = 0;
    for (uint8_t a : allowed) n += a;
    std::printf("%-34s %9.1f us  %6zu allowed\n", (std::string("'") + point + "'").c_str(), best,
                n);
  }
  return 0;
}
