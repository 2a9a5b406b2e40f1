// Whisper on the command line: af-cli logits --audio (decoder logits over an audio file) and
// af-cli transcribe (models::WhisperTranscriber, printed as text, verbose JSON, SRT or VTT).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_transcribe.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {

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
    std::string model, audio, format = "text", isa, prompt, quantize, features = "transformers";
    models::WhisperTranscribeOptions transcribe;
    modalities::AudioLimits limits;
    double no_speech_threshold = -1, logprob_threshold = 1;  // out of range: off
    double compression_ratio_threshold = 0;                  // 0: off
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  o->limits.max_seconds = 4 * 3600.0;
  auto* sub = app.add_subcommand("transcribe", "Transcribe or translate speech with Whisper");
  sub->add_option("-m,--model", o->model, "Whisper HF folder")->required();
  sub->add_option("--audio", o->audio, "WAV, FLAC, OGG or MP3 (any rate, any channels)")
      ->required();
  sub->add_option("--language", o->transcribe.language,
                  "language code (e.g. en); default: detected");
  sub->add_option("--task", o->transcribe.task, "transcribe or translate")
      ->check(CLI::IsMember({"transcribe", "translate"}));
  sub->add_flag("--timestamps", o->transcribe.timestamps,
                "predict timestamp tokens (always on for audio over 30 s)");
  sub->add_flag("--word-timestamps", o->transcribe.word_timestamps,
                "per-word times and probabilities as faster-whisper's word_timestamps (json "
                "output: \"words\" in each segment; needs alignment_heads)");
  sub->add_option("--output-format", o->format,
                  "text, json (OpenAI's verbose_json), srt, vtt or ids")
      ->check(CLI::IsMember({"text", "json", "srt", "vtt", "ids"}))
      ->capture_default_str();
  sub->add_option("--features", o->features,
                  "transformers (audio padded to 30 s) or faster-whisper (log-mel padded with "
                  "zeros, as openai-whisper and faster-whisper; their transcripts)")
      ->check(CLI::IsMember({"transformers", "faster-whisper"}))
      ->capture_default_str();
  sub->add_option("--beam-size", o->transcribe.search.beam_size,
                  "beam search with this many beams (1: greedy)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--patience", o->transcribe.search.patience,
                  "faster-whisper's beam patience (with --features faster-whisper)")
      ->check(CLI::Range(0.01, 64.0))
      ->capture_default_str();
  sub->add_option("--length-penalty", o->transcribe.search.length_penalty,
                  "beam scores are sum log-probability / length^this")
      ->capture_default_str();
  sub->add_option("--temperature", o->transcribe.temperatures,
                  "temperature fallback schedule, e.g. 0,0.2,0.4,0.6,0.8,1 (0: --beam-size "
                  "search; above 0: --best-of samples)")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option("--best-of", o->transcribe.best_of, "samples per temperature above 0")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--compression-ratio-threshold", o->compression_ratio_threshold,
                  "fall back to the next temperature above this ratio (e.g. 2.4)");
  sub->add_option("--seed", o->transcribe.seed, "sampling seed")->capture_default_str();
  sub->add_option("--prompt", o->transcribe.initial_prompt, "text the speech follows (vocabulary)");
  sub->add_flag("--condition-on-prev-tokens", o->transcribe.condition_on_prev_tokens,
                "prompt each 30 s window with the previous windows' text");
  sub->add_option("--no-speech-threshold", o->no_speech_threshold,
                  "skip windows whose no-speech probability is above this (with "
                  "--logprob-threshold)");
  sub->add_option("--logprob-threshold", o->logprob_threshold,
                  "... and whose average log-probability is below this");
  sub->add_option("--max-new-tokens", o->transcribe.max_new_tokens,
                  "per 30 s window; 0: up to the model's max_length");
  sub->add_option("--batch-windows", o->transcribe.batch_windows,
                  "with --features faster-whisper and no timestamps: 30 s windows decoded side "
                  "by side (same results; fewer past 256 MiB of decoder state)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--max-seconds", o->limits.max_seconds, "refuse longer audio")
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
    auto transcriber = models::WhisperTranscriber::load(o->model, options);
    models::WhisperTranscribeOptions t = o->transcribe;
    if (o->features == "faster-whisper") t.features = models::WhisperFeatures::kFasterWhisper;
    if (o->no_speech_threshold >= 0) t.no_speech_threshold = o->no_speech_threshold;
    if (o->logprob_threshold <= 0) t.logprob_threshold = o->logprob_threshold;
    if (o->compression_ratio_threshold > 0) {
      t.compression_ratio_threshold = o->compression_ratio_threshold;
    }
    AF_CHECK(o->format == "ids" || transcriber->tokenizer() != nullptr, ErrorCode::kInvalidArgument,
             "cli", o->model, ": no tokenizer.json for text output (use --output-format ids)");
    const models::WhisperTranscription r = transcriber->transcribe_file(o->audio, t, o->limits);
    std::string out;
    if (o->format == "ids") {
      for (int32_t id : r.tokens) out += (out.empty() ? "" : " ") + std::to_string(id);
      out += "\n";
    } else {
      out = models::format_transcription(r, o->format == "json" ? "verbose_json" : o->format,
                                         t.task.empty() ? "transcribe" : t.task);
      if (o->format == "json") out += "\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  };
}

}  // namespace af::cli
