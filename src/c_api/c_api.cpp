// The C API: every entry point catches what the C++ API throws and turns it into an af_status
// plus a thread-local message, so no exception crosses the C boundary.
#include "af/c/alloyforge.h"

#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "runtime/chat.hpp"

struct af_model {
  af::Session session;
};

struct af_result {
  af::GenerateResponse response;
};

namespace {

thread_local std::string last_error;

af_status status_of(af::ErrorCode code) {
  switch (code) {
    case af::ErrorCode::kInvalidArgument:
      return AF_ERR_INVALID_ARGUMENT;
    case af::ErrorCode::kFormat:
      return AF_ERR_FORMAT;
    case af::ErrorCode::kIo:
      return AF_ERR_IO;
    case af::ErrorCode::kUnsupported:
      return AF_ERR_UNSUPPORTED;
    case af::ErrorCode::kOutOfRange:
      return AF_ERR_OUT_OF_RANGE;
    case af::ErrorCode::kInternal:
      return AF_ERR_INTERNAL;
  }
  return AF_ERR_INTERNAL;
}

af_status fail(af_status status, std::string message) {
  last_error = std::move(message);
  return status;
}

// Runs `body` (which returns af_status), mapping exceptions to statuses and messages.
template <class Body>
af_status guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const af::Error& e) {
    return fail(status_of(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(AF_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(AF_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(AF_ERR_INTERNAL, "unknown exception");
  }
}

// Options come from C code compiled against this header or an older one: only the fields inside
// the caller's struct_size are read.
template <class T>
T read_options(const T* given, void (*init)(T*)) {
  T options;
  init(&options);
  if (given != nullptr) {
    const size_t size = given->struct_size < sizeof(T) ? given->struct_size : sizeof(T);
    std::memcpy(&options, given, size);
    options.struct_size = sizeof(T);
  }
  return options;
}

std::optional<af::DType> parse_dtype(const char* name) {
  if (name == nullptr || *name == '\0') return std::nullopt;
  std::optional<af::DType> dtype = af::dtype_from_name(name);
  AF_CHECK(dtype.has_value(), af::ErrorCode::kInvalidArgument, "c_api",
           "af_load_options.dtype: unknown type \"", name, "\" (f32, f16, bf16, q8_0, ...)");
  return dtype;
}

af::GenerateRequest make_request(const af_generate_params* given, af_token_callback on_token,
                                 void* user_data) {
  const af_generate_params p = read_options(given, af_generate_params_init);
  af::GenerateRequest request;
  request.max_tokens = p.max_tokens;
  request.sampling.temperature = p.temperature;
  request.sampling.top_k = p.top_k;
  request.sampling.top_p = p.top_p;
  request.sampling.min_p = p.min_p;
  request.sampling.repetition_penalty = p.repetition_penalty;
  request.sampling.seed = p.seed;
  request.ignore_eos = p.ignore_eos;
  AF_CHECK(p.n_stop == 0 || p.stop != nullptr, af::ErrorCode::kInvalidArgument, "c_api",
           "af_generate_params.stop is NULL but n_stop is ", p.n_stop);
  for (size_t i = 0; i < p.n_stop; ++i) {
    AF_CHECK(p.stop[i] != nullptr, af::ErrorCode::kInvalidArgument, "c_api",
             "af_generate_params.stop[", i, "] is NULL");
    request.stop.emplace_back(p.stop[i]);
  }
  if (on_token != nullptr) {
    request.on_token = [on_token, user_data](const af::TokenEvent& event) {
      return on_token(event.text.data(), event.text.size(), event.id, user_data);
    };
  }
  return request;
}

// Where the model's chat template lives: the .gguf file, or the folder of an HF model (also for
// a path to one of its .safetensors files).
std::string template_home(const std::string& path) {
  const std::filesystem::path p(path);
  if (p.extension() == ".safetensors") return p.parent_path().string();
  return path;
}

af_status check_not_null(const void* pointer, const char* what) {
  if (pointer != nullptr) return AF_OK;
  return fail(AF_ERR_INVALID_ARGUMENT, std::string("[c_api] ") + what + " is NULL");
}

const af::tok::Tokenizer& tokenizer_of(af_model* model) {
  const af::tok::Tokenizer* tokenizer = model->session.tokenizer();
  AF_CHECK(tokenizer != nullptr, af::ErrorCode::kInvalidArgument, "c_api",
           "the model has no tokenizer");
  return *tokenizer;
}

}  // namespace

extern "C" {

const char* af_status_name(af_status status) {
  switch (status) {
    case AF_OK:
      return "ok";
    case AF_ERR_INVALID_ARGUMENT:
      return "invalid_argument";
    case AF_ERR_FORMAT:
      return "format";
    case AF_ERR_IO:
      return "io";
    case AF_ERR_UNSUPPORTED:
      return "unsupported";
    case AF_ERR_OUT_OF_RANGE:
      return "out_of_range";
    case AF_ERR_BUFFER_TOO_SMALL:
      return "buffer_too_small";
    case AF_ERR_OUT_OF_MEMORY:
      return "out_of_memory";
    case AF_ERR_INTERNAL:
      return "internal";
  }
  return "unknown";
}

const char* af_last_error(void) { return last_error.c_str(); }
const char* af_version(void) { return AF_VERSION_STRING; }

void af_load_options_init(af_load_options* options) {
  if (options == nullptr) return;
  *options = {};
  options->struct_size = sizeof(af_load_options);
}

af_status af_model_load(const char* path, const af_load_options* given, af_model** out) {
  return guarded([&] {
    if (af_status s = check_not_null(path, "path"); s != AF_OK) return s;
    if (af_status s = check_not_null(out, "out"); s != AF_OK) return s;
    *out = nullptr;
    const af_load_options o = read_options(given, af_load_options_init);
    af::models::LoadOptions load;
    load.dtype = parse_dtype(o.dtype);
    load.quantize = o.quantize != nullptr ? o.quantize : "";
    load.num_threads = o.threads;
    load.context_length = o.context_length;
    AF_CHECK(o.threads >= 0 && o.context_length >= 0, af::ErrorCode::kInvalidArgument, "c_api",
             "af_load_options.threads and .context_length must be >= 0");
    std::unique_ptr<af::models::CausalLM> loaded = af::models::load(path, load);
    af::SessionBuilder builder;
    // ChatML for models that ship no template, as af-cli chat and af-server do.
    if (!af::tok::find_chat_template(template_home(path))) {
      builder.chat_template(af::runtime::kChatMlTemplate);
    }
    *out = new af_model{builder.build(std::move(loaded))};
    return AF_OK;
  });
}

void af_model_free(af_model* model) { delete model; }

int64_t af_model_vocab_size(const af_model* model) {
  return model ? const_cast<af_model*>(model)->session.model().config().vocab_size : 0;
}
int64_t af_model_context_length(const af_model* model) {
  return model ? model->session.context_length() : 0;
}

af_status af_tokenize(af_model* model, const char* text, size_t text_len, bool add_special,
                      bool parse_special, int32_t* ids, size_t capacity, size_t* n_ids) {
  return guarded([&] {
    for (auto [pointer, what] :
         {std::pair<const void*, const char*>{model, "model"}, {text, "text"}, {n_ids, "n_ids"}}) {
      if (af_status s = check_not_null(pointer, what); s != AF_OK) return s;
    }
    const std::vector<int32_t> out =
        tokenizer_of(model).encode({text, text_len}, add_special, parse_special);
    *n_ids = out.size();
    if (out.size() > capacity || (ids == nullptr && !out.empty())) {
      return fail(AF_ERR_BUFFER_TOO_SMALL, "[c_api] af_tokenize: " + std::to_string(out.size()) +
                                               " ids do not fit a buffer of " +
                                               std::to_string(capacity));
    }
    std::copy(out.begin(), out.end(), ids);
    return AF_OK;
  });
}

af_status af_detokenize(af_model* model, const int32_t* ids, size_t n_ids, bool skip_special,
                        char* text, size_t capacity, size_t* text_len) {
  return guarded([&] {
    if (af_status s = check_not_null(model, "model"); s != AF_OK) return s;
    if (af_status s = check_not_null(text_len, "text_len"); s != AF_OK) return s;
    if (n_ids > 0) {
      if (af_status s = check_not_null(ids, "ids"); s != AF_OK) return s;
    }
    const std::string out = tokenizer_of(model).decode({ids, n_ids}, skip_special);
    *text_len = out.size();
    if (text == nullptr || out.size() + 1 > capacity) {
      return fail(AF_ERR_BUFFER_TOO_SMALL,
                  "[c_api] af_detokenize: " + std::to_string(out.size() + 1) +
                      " bytes do not fit a buffer of " + std::to_string(capacity));
    }
    std::memcpy(text, out.c_str(), out.size() + 1);
    return AF_OK;
  });
}

void af_generate_params_init(af_generate_params* params) {
  if (params == nullptr) return;
  *params = {};
  params->struct_size = sizeof(af_generate_params);
  params->max_tokens = 256;
  params->top_p = 1.0f;
  params->repetition_penalty = 1.0f;
}

af_status af_generate(af_model* model, const char* prompt, const af_generate_params* params,
                      af_token_callback on_token, void* user_data, af_result** out) {
  return guarded([&] {
    for (auto [pointer, what] :
         {std::pair<const void*, const char*>{model, "model"}, {prompt, "prompt"}, {out, "out"}}) {
      if (af_status s = check_not_null(pointer, what); s != AF_OK) return s;
    }
    *out = nullptr;
    af::GenerateRequest request = make_request(params, on_token, user_data);
    request.prompt = prompt;
    *out = new af_result{model->session.generate(request)};
    return AF_OK;
  });
}

af_status af_chat(af_model* model, const af_chat_message* messages, size_t n_messages,
                  const af_generate_params* params, af_token_callback on_token, void* user_data,
                  af_result** out) {
  return guarded([&] {
    for (auto [pointer, what] : {std::pair<const void*, const char*>{model, "model"},
                                 {messages, "messages"},
                                 {out, "out"}}) {
      if (af_status s = check_not_null(pointer, what); s != AF_OK) return s;
    }
    *out = nullptr;
    std::vector<af::ChatMessage> chat;
    for (size_t i = 0; i < n_messages; ++i) {
      AF_CHECK(messages[i].role != nullptr && messages[i].content != nullptr,
               af::ErrorCode::kInvalidArgument, "c_api", "messages[", i,
               "]: role and content must not be NULL");
      chat.push_back({messages[i].role, messages[i].content});
    }
    AF_CHECK(!chat.empty(), af::ErrorCode::kInvalidArgument, "c_api", "af_chat: no messages");
    *out = new af_result{
        model->session.chat_completion(chat, make_request(params, on_token, user_data))};
    return AF_OK;
  });
}

void af_model_cancel(af_model* model) {
  if (model != nullptr) model->session.cancel();
}

af_status af_logits(af_model* model, const int32_t* ids, size_t n_ids, float* logits,
                    size_t capacity, size_t* needed) {
  return guarded([&] {
    for (auto [pointer, what] :
         {std::pair<const void*, const char*>{model, "model"}, {ids, "ids"}, {needed, "needed"}}) {
      if (af_status s = check_not_null(pointer, what); s != AF_OK) return s;
    }
    const auto vocab = static_cast<size_t>(model->session.model().config().vocab_size);
    *needed = n_ids * vocab;
    // Checked before running the model, so a too-small buffer costs nothing.
    if (logits == nullptr || *needed > capacity) {
      return fail(AF_ERR_BUFFER_TOO_SMALL, "[c_api] af_logits: " + std::to_string(*needed) +
                                               " floats do not fit a buffer of " +
                                               std::to_string(capacity));
    }
    const std::vector<float> out = model->session.logits({ids, n_ids});
    std::copy(out.begin(), out.end(), logits);
    return AF_OK;
  });
}

const char* af_result_text(const af_result* result, size_t* len) {
  if (result == nullptr) {
    if (len) *len = 0;
    return "";
  }
  if (len) *len = result->response.text.size();
  return result->response.text.c_str();
}

const int32_t* af_result_tokens(const af_result* result, size_t* n) {
  if (n) *n = result ? result->response.ids.size() : 0;
  return result ? result->response.ids.data() : nullptr;
}

const char* af_result_finish_reason(const af_result* result) {
  // to_string returns views of string literals, so data() is NUL-terminated.
  return result ? af::to_string(result->response.finish_reason).data() : "";
}

af_timings af_result_timings(const af_result* result) {
  af_timings t = {};
  if (result == nullptr) return t;
  const af::GenerateResponse& r = result->response;
  t.prefill_ms = r.timings.prefill_ms;
  t.decode_ms = r.timings.decode_ms;
  t.time_to_first_token_ms = r.timings.time_to_first_token_ms;
  t.prompt_tokens_per_s = r.timings.prompt_tokens_per_s;
  t.generated_tokens_per_s = r.timings.generated_tokens_per_s;
  t.prompt_tokens = r.prompt_tokens;
  t.cached_tokens = r.cached_tokens;
  return t;
}

void af_result_free(af_result* result) { delete result; }

}  // extern "C"
