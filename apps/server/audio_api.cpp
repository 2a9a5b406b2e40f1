// POST /v1/audio/transcriptions and /v1/audio/translations: multipart parsing under the body
// limit, the form's fields, and af::models::WhisperTranscriber.
#include "audio_api.hpp"

#include <cstdlib>
#include <filesystem>

#include "af/core/error.hpp"
#include "api.hpp"
#include "http_front.hpp"
#include "server.hpp"

namespace af::server {
namespace {

constexpr size_t kMaxFieldBytes = 64 << 10;

ApiError bad(const std::string& message, const std::string& param = "") {
  return ApiError(400, message, "invalid_request_error", param, "invalid_value");
}

std::string field(const AudioForm& f, const std::string& name, const std::string& fallback = "") {
  const auto it = f.fields.find(name);
  return it == f.fields.end() || it->second.empty() ? fallback : it->second.back();
}

models::WhisperTranscribeOptions options_of(const AudioForm& f,
                                            const models::WhisperTranscribeOptions& defaults,
                                            bool translate, std::string* format,
                                            models::WhisperJsonParts* parts) {
  models::WhisperTranscribeOptions o = defaults;
  o.task = translate ? "translate" : "transcribe";
  if (!translate) o.language = field(f, "language");
  o.initial_prompt = field(f, "prompt");
  *format = field(f, "response_format", "json");
  if (!models::is_transcription_format(*format)) {
    throw bad("response_format '" + *format + "' is not one of json, text, srt, verbose_json, vtt.",
              "response_format");
  }
  // OpenAI's temperature (0..1): 0 keeps the server's schedule, above 0 samples at it.
  const std::string temperature = field(f, "temperature", "0");
  char* end = nullptr;
  const double t = std::strtod(temperature.c_str(), &end);
  if (end == temperature.c_str() || *end != '\0' || !(t >= 0.0 && t <= 1.0)) {
    throw bad("temperature '" + temperature + "' must be a number from 0 to 1.", "temperature");
  }
  if (t > 0.0) o.temperatures = {t};
  // OpenAI's granularities: segments unless only words are asked for; words (faster-whisper's
  // word timestamps) only in verbose_json.
  bool segments = false, words = false;
  for (const char* key : {"timestamp_granularities[]", "timestamp_granularities"}) {
    const auto it = f.fields.find(key);
    if (it == f.fields.end()) continue;
    for (const std::string& g : it->second) {
      if (g != "segment" && g != "word") {
        throw bad("timestamp_granularities '" + g + "' is not one of segment, word.",
                  "timestamp_granularities[]");
      }
      (g == "word" ? words : segments) = true;
      o.timestamps = true;
    }
  }
  if (words && *format != "verbose_json") {
    throw bad("timestamp_granularities 'word' needs response_format 'verbose_json'.",
              "timestamp_granularities[]");
  }
  o.word_timestamps = words;
  parts->segments = segments || !words;
  parts->segment_words = false;
  parts->words = words;
  if (*format == "srt" || *format == "vtt" || *format == "verbose_json") o.timestamps = true;
  return o;
}

std::string content_type(const std::string& format) {
  if (format == "json" || format == "verbose_json") return "application/json";
  return format == "vtt" ? "text/vtt; charset=utf-8" : "text/plain; charset=utf-8";
}

}  // namespace

AudioForm read_audio_form(const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader, const ServerOptions& options) {
  const auto too_large = [&] {
    GuardedServer::close_after_response();
    return ApiError(413,
                    "The request body is larger than " + std::to_string(options.max_body) +
                        " bytes (--max-body-bytes).",
                    "invalid_request_error", "", "request_too_large");
  };
  if (req.has_header("Content-Length") &&
      req.get_header_value<uint64_t>("Content-Length") > options.max_body) {
    throw too_large();
  }
  if (!req.is_multipart_form_data()) {
    GuardedServer::close_after_response();
    throw ApiError(400, "The audio endpoints take a multipart/form-data body with a 'file' part.",
                   "invalid_request_error", "file", "invalid_body");
  }
  AudioForm form;
  size_t total = 0;
  bool over = false, field_too_long = false, in_file = false;
  std::string* target = nullptr;
  const bool ok = reader(
      [&](const httplib::MultipartFormData& part) {
        in_file = part.name == "file";
        if (in_file) {
          form.filename = part.filename;
          form.file.clear();
          target = &form.file;
          return ++form.file_parts <= 1;  // a second file part ends the reading (400 below)
        }
        form.fields[part.name].emplace_back();
        target = &form.fields[part.name].back();
        return true;
      },
      [&](const char* data, size_t n) {
        total += n;
        over = total > options.max_body;
        field_too_long = !in_file && target && target->size() + n > kMaxFieldBytes;
        if (over || field_too_long || !target) return false;
        target->append(data, n);
        return true;
      });
  if (over || res.status == 413) throw too_large();
  if (form.file_parts > 1) {
    GuardedServer::close_after_response();
    throw bad("The body holds more than one 'file' part; send one audio file.", "file");
  }
  if (field_too_long) throw bad("A form field is longer than 64 KiB.");
  if (!ok) {
    GuardedServer::close_after_response();
    throw bad("The multipart/form-data body is malformed or ended early.");
  }
  if (form.file_parts == 0)
    throw bad("The body has no 'file' part (the audio to transcribe).", "file");
  return form;
}

AudioApi::AudioApi(const std::string& path, int threads,
                   const models::WhisperTranscribeOptions& defaults)
    : defaults_(defaults) {
  models::LoadOptions load;
  load.num_threads = threads;
  transcriber_ = models::WhisperTranscriber::load(path, load);
  AF_CHECK(transcriber_->tokenizer() != nullptr, ErrorCode::kInvalidArgument, "server", path,
           ": the Whisper model needs tokenizer.json to answer with text");
  const std::filesystem::path p(path);
  model_id_ = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
}

void AudioApi::handle(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader, const ServerOptions& options,
                      bool translate) {
  const AudioForm form = read_audio_form(req, res, reader, options);
  std::string format;
  models::WhisperJsonParts parts;
  const models::WhisperTranscribeOptions o =
      options_of(form, defaults_, translate, &format, &parts);
  const std::string name = form.filename.empty() ? "file" : form.filename;
  modalities::AudioLimits limits;
  limits.max_seconds = options.max_audio_seconds;
  models::WhisperTranscription result;
  try {
    const auto bytes =
        std::span(reinterpret_cast<const uint8_t*>(form.file.data()), form.file.size());
    auto stream = modalities::AudioStream::decode(bytes, name, limits);
    std::lock_guard lock(mutex_);
    result = transcriber_->transcribe(*stream, o);
  } catch (const Error& e) {
    // Undecodable, empty, truncated or too long audio, an unknown language: the request's fault.
    if (e.code() == ErrorCode::kInternal || e.code() == ErrorCode::kIo) throw;
    const std::string message = e.what();
    if (message.find("max_seconds") != std::string::npos) {
      throw ApiError(413, message + " (--max-audio-seconds)", "invalid_request_error", "file",
                     "audio_too_long");
    }
    throw bad(message, e.component() == "audio" ? "file" : "");
  }
  res.set_content(models::format_transcription(result, format, o.task, parts),
                  content_type(format));
}

}  // namespace af::server
