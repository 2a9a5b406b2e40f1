// af-cli log-mel -m MODEL --audio FILE: Whisper's input features as the model's
// WhisperFeatureExtractor computes them (the padded 30 s chunk). Output contract: n_mels lines,
// each with n_frames values as %.9g (round-trips float32).
#include <cstdio>
#include <memory>
#include <string>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "commands.hpp"

namespace af::cli {

Command add_log_mel(CLI::App& app) {
  struct Options {
    std::string model, audio;
    double max_seconds = modalities::AudioLimits{}.max_seconds;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("log-mel", "Print the log-mel features Whisper sees for a file");
  sub->add_option("-m,--model", o->model, "HF folder with preprocessor_config.json, or that file")
      ->required();
  sub->add_option("--audio", o->audio, "WAV, FLAC, OGG or MP3 (any rate, any channels)")
      ->required();
  sub->add_option("--max-seconds", o->max_seconds, "refuse longer audio (header check)")
      ->capture_default_str();
  return [o]() {
    const modalities::LogMelExtractor extractor(modalities::LogMelConfig::load(o->model));
    modalities::AudioLimits limits;
    limits.max_seconds = o->max_seconds;
    const modalities::LogMel mel =
        extractor.compute(modalities::Audio::load(o->audio, limits).samples());
    std::string line;
    char number[32];
    for (int64_t m = 0; m < mel.n_mels; ++m) {
      line.clear();
      for (int64_t t = 0; t < mel.n_frames; ++t) {
        std::snprintf(number, sizeof number, t ? " %.9g" : "%.9g",
                      double(mel.data[size_t(m * mel.n_frames + t)]));
        line += number;
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    return 0;
  };
}

}  // namespace af::cli
