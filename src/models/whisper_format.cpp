// Whisper results as OpenAI's audio API writes them: text, json, verbose_json, srt and vtt.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/models/whisper_transcribe.hpp"

namespace af::models {
namespace {

// Decoded text is valid UTF-8 (the tokenizer replaces broken sequences); replace, never throw.
constexpr auto kReplace = nlohmann::json::error_handler_t::replace;

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT).
std::string clock(double seconds, char separator) {
  const auto ms = static_cast<long long>(std::llround(std::max(0.0, seconds) * 1000));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
                ms / 1000 % 60, separator, ms % 1000);
  return buf;
}

std::string subtitles(const WhisperTranscription& r, bool srt) {
  std::string out = srt ? "" : "WEBVTT\n\n";
  const char separator = srt ? ',' : '.';
  size_t index = 0;
  for (const WhisperSegment& s : r.segments) {
    const std::string text = trimmed(s.text);
    if (text.empty()) continue;  // windows with no text (silence) would be empty cues
    if (srt) out += std::to_string(++index) + "\n";
    out += clock(s.start, separator) + " --> " + clock(s.end, separator) + "\n" + text + "\n\n";
  }
  return out;
}

nlohmann::json segment_words(const WhisperSegment& s) {
  nlohmann::json words = nlohmann::json::array();
  for (const WhisperWord& w : s.words) {
    words.push_back(
        {{"word", w.word}, {"start", w.start}, {"end", w.end}, {"probability", w.probability}});
  }
  return words;
}

// OpenAI's top-level words: every segment's, the text trimmed.
nlohmann::json all_words(const WhisperTranscription& r) {
  nlohmann::json words = nlohmann::json::array();
  for (const WhisperSegment& s : r.segments) {
    for (const WhisperWord& w : s.words) {
      words.push_back({{"word", trimmed(w.word)}, {"start", w.start}, {"end", w.end}});
    }
  }
  return words;
}

nlohmann::json verbose(const WhisperTranscription& r, const std::string& task,
                       const WhisperJsonParts& parts) {
  nlohmann::json segments = nlohmann::json::array();
  for (const WhisperSegment& s : r.segments) {
    segments.push_back({{"id", s.id},
                        {"seek", s.seek},
                        {"start", s.start},
                        {"end", s.end},
                        {"text", s.text},
                        {"tokens", s.tokens},
                        {"temperature", s.temperature},
                        {"avg_logprob", s.avg_logprob},
                        {"compression_ratio", s.compression_ratio},
                        {"no_speech_prob", s.no_speech_prob}});
    if (parts.segment_words && !s.words.empty()) segments.back()["words"] = segment_words(s);
  }
  nlohmann::json out = {{"task", task},
                        {"language", r.language},
                        {"duration", r.duration},
                        {"text", trimmed(r.text)}};
  if (parts.segments) out["segments"] = std::move(segments);
  if (parts.words) out["words"] = all_words(r);
  return out;
}

}  // namespace

bool is_transcription_format(const std::string& f) {
  return f == "text" || f == "json" || f == "verbose_json" || f == "srt" || f == "vtt";
}

std::string format_transcription(const WhisperTranscription& r, const std::string& format,
                                 const std::string& task, const WhisperJsonParts& parts) {
  AF_CHECK(is_transcription_format(format), ErrorCode::kInvalidArgument, "whisper",
           "response format \"", format, "\" is not one of json, text, srt, verbose_json, vtt");
  if (format == "text") return trimmed(r.text) + "\n";
  if (format == "json")
    return nlohmann::json{{"text", trimmed(r.text)}}.dump(-1, ' ', false, kReplace);
  if (format == "verbose_json") return verbose(r, task, parts).dump(-1, ' ', false, kReplace);
  return subtitles(r, format == "srt");
}

}  // namespace af::models
