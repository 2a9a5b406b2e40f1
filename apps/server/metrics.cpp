#include "metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace af::server {

namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Metrics::Histogram::observe(double seconds) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      counts[i] += 1;
      break;
    }
  }
  count += 1;
  sum += seconds;
}

void Metrics::Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cumulative += counts[i];
    out +=
        name + "_bucket{le=\"" + number(kBuckets[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count) + "\n";
  out += name + "_sum " + number(sum) + "\n";
  out += name + "_count " + std::to_string(count) + "\n";
}

void Metrics::count_request(const std::string& path, int status) {
  // Known endpoints only, so that clients cannot grow the label set without bound.
  static constexpr std::array<std::string_view, 5> kPaths = {
      "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"};
  const bool known = std::find(kPaths.begin(), kPaths.end(), path) != kPaths.end();
  std::lock_guard lock(mutex_);
  requests_[{known ? path : "other", status}] += 1;
}

void Metrics::observe_generation(const runtime::RequestResult& result) {
  std::lock_guard lock(mutex_);
  finish_reasons_[runtime::finish_reason(result.cause)] += 1;
  if (result.cause == runtime::StopCause::kCancelled) return;
  queue_time_.observe(result.queue_seconds);
  first_token_time_.observe(result.first_token_seconds);
  request_time_.observe(result.total_seconds);
}

std::string Metrics::render(const runtime::SchedulerStats& s, int parallel) const {
  std::string out;
  std::lock_guard lock(mutex_);
  header(out, "af_http_requests_total", "counter", "HTTP requests answered, by path and status.");
  for (const auto& [key, count] : requests_) {
    out += "af_http_requests_total{path=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(count) + "\n";
  }
  header(out, "af_generations_total", "counter", "Finished generations (choices), by reason.");
  for (const auto& [reason, count] : finish_reasons_) {
    out += "af_generations_total{finish_reason=\"" + reason + "\"} " + std::to_string(count) + "\n";
  }
  header(out, "af_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  out += "af_prompt_tokens_total " + std::to_string(s.prompt_tokens) + "\n";
  header(out, "af_prompt_tokens_computed_total", "counter",
         "Prompt tokens computed (the rest were reused from a slot's cache).");
  out += "af_prompt_tokens_computed_total " + std::to_string(s.prompt_tokens_computed) + "\n";
  header(out, "af_image_encodes_total", "counter",
         "Image encoder runs (a cached image is not encoded again).");
  out += "af_image_encodes_total " + std::to_string(s.image_encodes) + "\n";
  header(out, "af_generated_tokens_total", "counter", "Generated tokens.");
  out += "af_generated_tokens_total " + std::to_string(s.generated_tokens) + "\n";
  header(out, "af_queue_depth", "gauge", "Requests waiting for a slot.");
  out += "af_queue_depth " + std::to_string(s.queued) + "\n";
  header(out, "af_slots_busy", "gauge", "Slots generating.");
  out += "af_slots_busy " + std::to_string(s.active) + "\n";
  header(out, "af_slots_total", "gauge", "Slots (--parallel).");
  out += "af_slots_total " + std::to_string(parallel) + "\n";
  header(out, "af_batch_steps_total", "counter", "Batched forward passes.");
  out += "af_batch_steps_total " + std::to_string(s.steps) + "\n";
  header(out, "af_busy_seconds_total", "counter", "Seconds spent in forward passes.");
  out += "af_busy_seconds_total " + number(s.busy_seconds) + "\n";
  header(out, "af_decode_tokens_per_second", "gauge",
         "Tokens decoded per second of forward passes that decoded (all slots together).");
  out += "af_decode_tokens_per_second " +
         number(s.generate_seconds > 0 ? s.decode_tokens_in_steps / s.generate_seconds : 0.0) +
         "\n";
  header(out, "af_queue_seconds", "histogram", "Time from arrival to a slot.");
  queue_time_.render(out, "af_queue_seconds");
  header(out, "af_time_to_first_token_seconds", "histogram", "Time from arrival to first token.");
  first_token_time_.render(out, "af_time_to_first_token_seconds");
  header(out, "af_request_seconds", "histogram", "Time from arrival to the last token.");
  request_time_.render(out, "af_request_seconds");
  return out;
}

}  // namespace af::server
