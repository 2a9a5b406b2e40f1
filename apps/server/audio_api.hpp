#pragma once
// OpenAI's audio endpoints over a Whisper model: POST /v1/audio/transcriptions and
// /v1/audio/translations (multipart/form-data: file, model, language, prompt, response_format,
// temperature, timestamp_granularities[]).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <httplib.h>

#include "af/models/whisper_transcribe.hpp"

namespace af::server {

struct ServerOptions;

// A multipart/form-data body: its text fields and its one "file" part.
struct AudioForm {
  std::map<std::string, std::vector<std::string>> fields;
  std::string file;      // the file part's bytes
  std::string filename;  // as the client named it
  int file_parts = 0;
};

// Reads a multipart body with the --max-body-bytes limit over all its parts (413 beyond); text
// fields are capped at 64 KiB each. Throws ApiError: 400 when the body is not multipart or is
// malformed, when there is no "file" part or more than one.
AudioForm read_audio_form(const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader, const ServerOptions& options);

class AudioApi {
 public:
  // The Whisper HF folder (--whisper-model).
  AudioApi(const std::string& path, int threads, const models::WhisperTranscribeOptions& defaults);
  // Transcribes (or translates to English) one request; one at a time (the model holds one
  // decoder state). Bad audio or options are 400 naming the problem.
  void handle(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& reader, const ServerOptions& options, bool translate);
  const std::string& model_id() const { return model_id_; }

 private:
  std::unique_ptr<models::WhisperTranscriber> transcriber_;
  models::WhisperTranscribeOptions defaults_;
  std::string model_id_;
  std::mutex mutex_;
};

}  // namespace af::server
