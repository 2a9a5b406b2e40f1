// Whisper on the command line: af-cli logits --audio (decoder logits over an audio file) and
// af-cli transcribe (greedy decoding as transformers' generate, printed as text, JSON, SRT or VTT).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

struct Segment {
  double start = 0, end = 0;
  std::vector<int32_t> ids;  // text tokens
};

// Splits the generated ids at timestamp tokens (<|t|> = (id - timestamp_begin) * 0.02 s); without
// timestamps the whole text is one segment over the audio's duration.
std::vector<Segment> segments(const std::vector<int32_t>& tokens,
                              const models::WhisperGenerationConfig& c, double duration) {
  const int32_t ts_begin = c.timestamp_begin();
  std::vector<Segment> out(1);
  out.back().end = duration;
  bool open = false;
  for (int32_t id : tokens) {
    if (c.no_timestamps_token_id >= 0 && id >= ts_begin) {
      const double t = (id - ts_begin) * 0.02;
      if (!open) {
        if (!out.back().ids.empty()) out.emplace_back();
        out.back().start = t;
        open = true;
      } else {
        out.back().end = t;
        out.emplace_back();
        open = false;
      }
    } else if (id < c.eos_token_id || c.eos_token_id < 0) {
      out.back().ids.push_back(id);
    }
  }
  if (out.size() > 1 && out.back().ids.empty()) out.pop_back();
  return out;
}

std::string clock(double seconds, char separator) {
  const auto ms = static_cast<long long>(std::llround(seconds * 1000));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
                ms / 1000 % 60, separator, ms % 1000);
  return buf;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

int print_whisper_logits(const std::string& model_path, const std::string& audio_path,
                         const std::vector<int32_t>& ids, int threads, const std::string& isa) {
  models::LoadOptions options;
  options.num_threads = threads;
  options.isa = isa;
  auto model = models::Whisper::load(model_path, options);
  const modalities::LogMelExtractor extractor(modalities::LogMelConfig::load(model_path));
  const modalities::LogMel mel = extractor.compute(modalities::Audio::load(audio_path).samples());
  models::WhisperState state = model->start(model->encode(mel.data));
  const std::vector<float> logits = model->decode(state, ids, true);
  const size_t vocab = size_t(model->config().vocab_size);
  std::string line;
  char number[32];
  for (size_t t = 0; t < ids.size(); ++t) {
    line.clear();
    for (size_t j = 0; j < vocab; ++j) {
      std::snprintf(number, sizeof number, j ? " %.9g" : "%.9g", double(logits[t * vocab + j]));
      line += number;
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return 0;
}

Command add_transcribe(CLI::App& app) {
  struct Options {
    std::string model, audio, language, task, format = "text", isa, quantize;
    bool timestamps = false;
    int threads = 0;
    int64_t max_new_tokens = 0;
    double max_seconds = 30.0;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("transcribe", "Transcribe or translate speech with Whisper");
  sub->add_option("-m,--model", o->model, "Whisper HF folder")->required();
  sub->add_option("--audio", o->audio, "WAV, FLAC, OGG or MP3 (any rate, any channels)")
      ->required();
  sub->add_option("--language", o->language, "language code (e.g. en); default: detected");
  sub->add_option("--task", o->task, "transcribe or translate")
      ->check(CLI::IsMember({"transcribe", "translate"}));
  sub->add_flag("--timestamps", o->timestamps, "predict timestamp tokens (segments)");
  sub->add_option("--output-format", o->format, "text, json, srt, vtt or ids")
      ->check(CLI::IsMember({"text", "json", "srt", "vtt", "ids"}))
      ->capture_default_str();
  sub->add_option("--max-new-tokens", o->max_new_tokens, "0: up to the model's max_length");
  sub->add_option("--max-seconds", o->max_seconds,
                  "refuse longer audio (only the first 30 s window is decoded today)")
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--quantize", o->quantize,
                  "store the float matrices as bf16 or q8_0 (or another --quantize type) at load");
  add_isa_option(*sub, o->isa);
  return [o]() {
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.quantize = load_quantize_name(o->quantize);
    auto model = models::Whisper::load(o->model, options);
    const auto config = models::WhisperGenerationConfig::load(o->model);
    const modalities::LogMelExtractor extractor(modalities::LogMelConfig::load(o->model));
    modalities::AudioLimits limits;
    limits.max_seconds = o->max_seconds;
    const modalities::Audio audio = modalities::Audio::load(o->audio, limits);
    const modalities::LogMel mel = extractor.compute(audio.samples());
    const models::WhisperGeneration g = models::whisper_generate(
        *model, mel.data, config, {o->language, o->task, o->timestamps, o->max_new_tokens});
    if (o->format == "ids") {
      std::string line;
      for (int32_t id : g.tokens) {
        if (!line.empty()) line += ' ';
        line += std::to_string(id);
      }
      std::printf("%s\n", line.c_str());
      return 0;
    }
    AF_CHECK(std::filesystem::exists(std::filesystem::path(o->model) / "tokenizer.json"),
             ErrorCode::kInvalidArgument, "cli", o->model,
             ": no tokenizer.json for text output (use --output-format ids)");
    auto tokenizer = tok::Tokenizer::load(o->model);
    const std::vector<Segment> segs = segments(g.tokens, config, audio.seconds());
    std::string text;
    for (const Segment& s : segs) text += tokenizer->decode(s.ids, true);
    if (o->format == "text") {
      std::printf("%s\n", trim(text).c_str());
    } else if (o->format == "json") {
      nlohmann::json j{{"text", trim(text)}, {"tokens", g.tokens}};
      for (const auto& [name, id] : config.lang_to_id) {
        if (id == g.language_id) j["language"] = name;
      }
      j["segments"] = nlohmann::json::array();
      for (const Segment& s : segs) {
        j["segments"].push_back(
            {{"start", s.start}, {"end", s.end}, {"text", trim(tokenizer->decode(s.ids, true))}});
      }
      std::printf("%s\n", j.dump().c_str());
    } else {
      const bool srt = o->format == "srt";
      if (!srt) std::printf("WEBVTT\n\n");
      for (size_t i = 0; i < segs.size(); ++i) {
        if (srt) std::printf("%zu\n", i + 1);
        std::printf("%s --> %s\n%s\n\n", clock(segs[i].start, srt ? ',' : '.').c_str(),
                    clock(segs[i].end, srt ? ',' : '.').c_str(),
                    trim(tokenizer->decode(segs[i].ids, true)).c_str());
      }
    }
    return 0;
  };
}

}  // namespace af::cli
