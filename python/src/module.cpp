// _alloyforge: the Python module over af::Session (nanobind). Long calls (load, generate,
// logits, waiting for a streamed piece) release the GIL, so threads using separate models run in
// parallel. Every af::Error becomes alloyforge.Error carrying the library's message and code.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "runtime/chat.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

PyObject* g_error_type = nullptr;  // alloyforge.Error, set by the Python package

[[noreturn]] void raise(af::ErrorCode code, const std::string& message) {
  throw af::Error(code, "python", message);
}

// The sampling and stop options shared by generate, stream and chat.
struct Options {
  int32_t max_tokens = 256;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  std::vector<std::string> stop;
  uint64_t seed = 0;
};

af::GenerateRequest to_request(const Options& o) {
  af::GenerateRequest request;
  request.max_tokens = o.max_tokens;
  request.sampling.temperature = o.temperature;
  request.sampling.top_p = o.top_p;
  request.sampling.top_k = o.top_k;
  request.sampling.min_p = o.min_p;
  request.sampling.repetition_penalty = o.repetition_penalty;
  request.sampling.seed = o.seed;
  request.stop = o.stop;
  return request;
}

// Images and audio are part of the signatures already; no model of this version takes them.
void refuse_media(const nb::object& images, const nb::object& audio) {
  if (!images.is_none()) {
    raise(af::ErrorCode::kUnsupported,
          "images: this model takes no images (vision models are not available yet in this "
          "version of AlloyForge)");
  }
  if (!audio.is_none()) {
    raise(af::ErrorCode::kUnsupported,
          "audio: this model takes no audio (speech models are not available yet in this "
          "version of AlloyForge)");
  }
}

std::string template_home(const std::string& path) {
  const std::filesystem::path p(path);
  return p.extension() == ".safetensors" ? p.parent_path().string() : path;
}

class PyModel;

// One running generation whose pieces a Python iterator takes. The generation runs on its own
// thread (it never touches Python objects); the iterator waits for pieces without the GIL. The
// generation stays at most kMaxAhead pieces ahead of the consumer, so a stream nobody reads
// costs no compute, and one abandoned half way stops where it was read.
class Stream {
 public:
  Stream(std::shared_ptr<PyModel> model, af::GenerateRequest request,
         std::optional<std::vector<af::ChatMessage>> messages);
  ~Stream() { close(); }

  // The next piece of text, or nullopt at the end (rethrows the generation's error).
  std::optional<std::string> next();
  // Stops the generation (after the current token) and waits for its thread.
  void close();
  const af::GenerateResponse& response() const;

 private:
  std::shared_ptr<PyModel> model_;
  std::mutex mutex_;
  static constexpr size_t kMaxAhead = 4;
  std::condition_variable ready_;  // a piece or the end for the consumer
  std::condition_variable space_;  // room in pieces_, or stop_, for the generation
  std::deque<std::string> pieces_;
  bool done_ = false;
  bool stop_ = false;
  std::exception_ptr error_;
  std::optional<af::GenerateResponse> response_;
  std::thread worker_;
};

class PyModel : public std::enable_shared_from_this<PyModel> {
 public:
  explicit PyModel(af::Session session) : session_(std::move(session)) {}

  af::Session& session() { return session_; }
  const af::tok::Tokenizer& tokenizer() const {
    const af::tok::Tokenizer* tokenizer = session_.tokenizer();
    if (tokenizer == nullptr) raise(af::ErrorCode::kInvalidArgument, "the model has no tokenizer");
    return *tokenizer;
  }

  // Marks the model in use; released by its destructor on whichever thread holds it last (a
  // stream's worker), which a std::mutex would not allow.
  class Busy {
   public:
    explicit Busy(std::atomic<bool>* flag) : flag_(flag) {}
    Busy(Busy&& other) noexcept : flag_(std::exchange(other.flag_, nullptr)) {}
    Busy& operator=(Busy&&) = delete;
    ~Busy() { release(); }
    void release() {
      if (flag_) flag_->store(false);
      flag_ = nullptr;
    }

   private:
    std::atomic<bool>* flag_;
  };

  // A model runs one request at a time: a second one (another thread, or a call while a stream
  // of this model is still open) is refused rather than left waiting.
  Busy acquire() {
    if (busy_.exchange(true)) {
      raise(af::ErrorCode::kInvalidArgument,
            "the model is busy: another call or an unfinished stream uses it (exhaust or close() "
            "the stream, or load a second model for another thread)");
    }
    return Busy(&busy_);
  }

  af::GenerateResponse run(const af::GenerateRequest& request,
                           const std::optional<std::vector<af::ChatMessage>>& messages) {
    return messages ? session_.chat_completion(*messages, request) : session_.generate(request);
  }

 private:
  af::Session session_;
  std::atomic<bool> busy_{false};
};

Stream::Stream(std::shared_ptr<PyModel> model, af::GenerateRequest request,
               std::optional<std::vector<af::ChatMessage>> messages)
    : model_(std::move(model)) {
  auto lock = model_->acquire();
  request.on_token = [this](const af::TokenEvent& event) {
    std::unique_lock<std::mutex> guard(mutex_);
    space_.wait(guard, [this] { return pieces_.size() < kMaxAhead || stop_; });
    if (!event.text.empty() && !stop_) {
      pieces_.emplace_back(event.text);
      ready_.notify_one();
    }
    return !stop_;
  };
  worker_ = std::thread([this, lock = std::move(lock), request = std::move(request),
                         messages = std::move(messages)]() mutable {
    std::optional<af::GenerateResponse> response;
    std::exception_ptr error;
    try {
      response = model_->run(request, messages);
    } catch (...) {
      error = std::current_exception();
    }
    lock.release();  // the model is free again before the consumer learns the stream ended
    std::lock_guard<std::mutex> guard(mutex_);
    response_ = std::move(response);
    error_ = error;
    done_ = true;
    ready_.notify_one();
  });
}

std::optional<std::string> Stream::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait(lock, [this] { return !pieces_.empty() || done_; });
  if (!pieces_.empty()) {
    std::string piece = std::move(pieces_.front());
    pieces_.pop_front();
    space_.notify_one();
    return piece;
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return std::nullopt;
}

void Stream::close() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    stop_ = true;
  }
  space_.notify_one();
  if (worker_.joinable()) worker_.join();
}

const af::GenerateResponse& Stream::response() const {
  if (!response_) {
    raise(af::ErrorCode::kInvalidArgument,
          "the stream has not finished: iterate it to the end (or close() it) first");
  }
  return *response_;
}

std::shared_ptr<PyModel> load(const std::string& path, std::optional<std::string> dtype,
                              std::optional<std::string> quantize, int threads,
                              int64_t context_length, const nb::object& mmproj) {
  if (!mmproj.is_none()) {
    raise(af::ErrorCode::kUnsupported,
          "mmproj: multimodal projectors are not available yet in this version of AlloyForge");
  }
  af::models::LoadOptions options;
  if (dtype) {
    options.dtype = af::dtype_from_name(*dtype);
    if (!options.dtype) {
      raise(af::ErrorCode::kInvalidArgument,
            "dtype: unknown type \"" + *dtype + "\" (f32, f16, bf16, q8_0, q4_0, ...)");
    }
  }
  options.quantize = quantize.value_or("");
  if (threads < 0 || context_length < 0) {
    raise(af::ErrorCode::kInvalidArgument, "threads and context_length must be >= 0");
  }
  options.num_threads = threads;
  options.context_length = context_length;
  nb::gil_scoped_release release;
  std::unique_ptr<af::models::CausalLM> model = af::models::load(path, options);
  af::SessionBuilder builder;
  // ChatML for models that ship no template, as af-cli chat and af-server do.
  if (!af::tok::find_chat_template(template_home(path))) {
    builder.chat_template(af::runtime::kChatMlTemplate);
  }
  return std::make_shared<PyModel>(builder.build(std::move(model)));
}

std::vector<af::ChatMessage> to_messages(const nb::list& messages) {
  std::vector<af::ChatMessage> out;
  for (nb::handle item : messages) {
    if (!nb::isinstance<nb::dict>(item)) {
      raise(af::ErrorCode::kInvalidArgument,
            "messages[" + std::to_string(out.size()) + "]: expected a dict with role and content");
    }
    nb::dict message = nb::borrow<nb::dict>(item);
    if (!message.contains("role") || !message.contains("content")) {
      raise(af::ErrorCode::kInvalidArgument,
            "messages[" + std::to_string(out.size()) + "]: needs \"role\" and \"content\"");
    }
    out.push_back(
        {nb::cast<std::string>(message["role"]), nb::cast<std::string>(message["content"])});
  }
  if (out.empty()) raise(af::ErrorCode::kInvalidArgument, "messages: no messages");
  return out;
}

Options make_options(int32_t max_tokens, float temperature, float top_p, int32_t top_k, float min_p,
                     float repetition_penalty, std::optional<std::vector<std::string>> stop,
                     uint64_t seed) {
  return {max_tokens,
          temperature,
          top_p,
          top_k,
          min_p,
          repetition_penalty,
          stop.value_or(std::vector<std::string>{}),
          seed};
}

af::GenerateResponse generate(PyModel& model, const std::string& prompt, const Options& options,
                              const std::optional<std::vector<af::ChatMessage>>& messages) {
  af::GenerateRequest request = to_request(options);
  request.prompt = prompt;
  nb::gil_scoped_release release;
  auto lock = model.acquire();
  return model.run(request, messages);
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> logits(PyModel& model, const std::vector<int32_t>& ids) {
  auto* out = new std::vector<float>();
  {
    nb::gil_scoped_release release;
    try {
      auto lock = model.acquire();
      *out = model.session().logits(ids);
    } catch (...) {
      delete out;
      throw;
    }
  }
  // The array views the vector's memory (no copy); the capsule frees it with the array.
  nb::capsule owner(out, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  const size_t vocab = static_cast<size_t>(model.session().model().config().vocab_size);
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(out->data(), {ids.size(), vocab}, owner);
}

void translate_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const af::Error& e) {
    PyObject* type = g_error_type ? g_error_type : PyExc_RuntimeError;
    nb::object error = nb::steal(PyObject_CallFunction(type, "s", e.what()));
    if (!error.is_valid()) return;  // the constructor raised: that exception stands
    PyObject_SetAttrString(error.ptr(), "code", nb::str(af::error_code_name(e.code())).ptr());
    PyErr_SetObject(type, error.ptr());
  }
}

}  // namespace

NB_MODULE(_alloyforge, m) {
  m.doc() = "AlloyForge's native module; use the alloyforge package.";
  nb::register_exception_translator(translate_error);
  m.def("_set_error_type", [](nb::handle type) {
    Py_XINCREF(type.ptr());
    g_error_type = type.ptr();
  });

  nb::class_<af::Timings>(m, "Timings")
      .def_ro("prefill_ms", &af::Timings::prefill_ms)
      .def_ro("decode_ms", &af::Timings::decode_ms)
      .def_ro("time_to_first_token_ms", &af::Timings::time_to_first_token_ms)
      .def_ro("prompt_tokens_per_s", &af::Timings::prompt_tokens_per_s)
      .def_ro("generated_tokens_per_s", &af::Timings::generated_tokens_per_s);

  nb::class_<af::GenerateResponse>(m, "Response")
      .def_ro("text", &af::GenerateResponse::text)
      .def_ro("tokens", &af::GenerateResponse::ids)
      .def_prop_ro(
          "finish_reason",
          [](const af::GenerateResponse& r) { return std::string(to_string(r.finish_reason)); })
      .def_ro("stop_string", &af::GenerateResponse::stop_string)
      .def_ro("prompt_tokens", &af::GenerateResponse::prompt_tokens)
      .def_ro("cached_tokens", &af::GenerateResponse::cached_tokens)
      .def_ro("timings", &af::GenerateResponse::timings)
      .def("__str__", [](const af::GenerateResponse& r) { return r.text; })
      .def("__repr__", [](const af::GenerateResponse& r) {
        return "Response(finish_reason='" + std::string(to_string(r.finish_reason)) + "', " +
               std::to_string(r.ids.size()) + " tokens)";
      });

  nb::class_<Stream>(m, "Stream")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__",
           [](Stream& s) {
             std::optional<std::string> piece;
             {
               nb::gil_scoped_release release;
               piece = s.next();
             }
             if (!piece) throw nb::stop_iteration();
             return *piece;
           })
      .def("close", &Stream::close, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("response", &Stream::response, nb::rv_policy::reference_internal);

  nb::class_<af::tok::Tokenizer>(m, "Tokenizer")
      .def(
          "encode",
          [](const af::tok::Tokenizer& t, const std::string& text, bool add_special,
             bool parse_special) {
            nb::gil_scoped_release release;
            return t.encode(text, add_special, parse_special);
          },
          "text"_a, "add_special"_a = true, "parse_special"_a = false,
          "Text to ids (add_special: BOS etc.; parse_special: special-token text to control "
          "tokens).")
      .def(
          "decode",
          [](const af::tok::Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
            return t.decode(ids, skip_special);
          },
          "ids"_a, "skip_special"_a = true, "Ids to text.")
      .def_prop_ro("vocab_size", &af::tok::Tokenizer::vocab_size)
      .def_prop_ro("bos_id", &af::tok::Tokenizer::bos_id)
      .def_prop_ro("eos_id", &af::tok::Tokenizer::eos_id)
      .def("token_piece", &af::tok::Tokenizer::token_piece, "id"_a);

  nb::class_<PyModel>(m, "Model")
      .def(
          "generate",
          [](PyModel& model, const std::string& prompt, int32_t max_tokens, float temperature,
             float top_p, int32_t top_k, float min_p, float repetition_penalty,
             std::optional<std::vector<std::string>> stop, uint64_t seed, nb::object images,
             nb::object audio) {
            refuse_media(images, audio);
            return generate(model, prompt,
                            make_options(max_tokens, temperature, top_p, top_k, min_p,
                                         repetition_penalty, std::move(stop), seed),
                            std::nullopt);
          },
          "prompt"_a, nb::kw_only(), "max_tokens"_a = 256, "temperature"_a = 0.0f, "top_p"_a = 1.0f,
          "top_k"_a = 0, "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f, "stop"_a = nb::none(),
          "seed"_a = 0, "images"_a = nb::none(), "audio"_a = nb::none(),
          "Generates a continuation of prompt (temperature 0: greedy); returns a Response.")
      .def(
          "stream",
          [](PyModel& model, const std::string& prompt, int32_t max_tokens, float temperature,
             float top_p, int32_t top_k, float min_p, float repetition_penalty,
             std::optional<std::vector<std::string>> stop, uint64_t seed, nb::object images,
             nb::object audio) {
            refuse_media(images, audio);
            af::GenerateRequest request =
                to_request(make_options(max_tokens, temperature, top_p, top_k, min_p,
                                        repetition_penalty, std::move(stop), seed));
            request.prompt = prompt;
            return new Stream(model.shared_from_this(), std::move(request), std::nullopt);
          },
          "prompt"_a, nb::kw_only(), "max_tokens"_a = 256, "temperature"_a = 0.0f, "top_p"_a = 1.0f,
          "top_k"_a = 0, "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f, "stop"_a = nb::none(),
          "seed"_a = 0, "images"_a = nb::none(), "audio"_a = nb::none(),
          nb::rv_policy::take_ownership,
          "As generate(), returning a Stream of text pieces (break or close() stops it).")
      .def(
          "chat",
          [](PyModel& model, const nb::list& messages, int32_t max_tokens, float temperature,
             float top_p, int32_t top_k, float min_p, float repetition_penalty,
             std::optional<std::vector<std::string>> stop, uint64_t seed, bool stream,
             nb::object images, nb::object audio) -> nb::object {
            refuse_media(images, audio);
            const Options options = make_options(max_tokens, temperature, top_p, top_k, min_p,
                                                 repetition_penalty, std::move(stop), seed);
            std::vector<af::ChatMessage> chat = to_messages(messages);
            if (stream) {
              return nb::cast(
                  new Stream(model.shared_from_this(), to_request(options), std::move(chat)),
                  nb::rv_policy::take_ownership);
            }
            return nb::cast(generate(model, "", options, std::move(chat)));
          },
          "messages"_a, nb::kw_only(), "max_tokens"_a = 256, "temperature"_a = 0.0f,
          "top_p"_a = 1.0f, "top_k"_a = 0, "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f,
          "stop"_a = nb::none(), "seed"_a = 0, "stream"_a = false, "images"_a = nb::none(),
          "audio"_a = nb::none(),
          "The assistant's reply to messages ([{'role': ..., 'content': ...}]) with the model's "
          "chat template: a Response, or a Stream with stream=True.")
      .def("logits", &logits, "ids"_a,
           "Logits of every position of ids as a fresh sequence: a float32 NumPy array "
           "(len(ids), vocab) viewing the library's buffer.")
      .def(
          "cancel", [](PyModel& model) { model.session().cancel(); },
          "Stops a generation running on another thread after the current token.")
      .def_prop_ro("tokenizer", &PyModel::tokenizer, nb::rv_policy::reference_internal)
      .def_prop_ro("vocab_size",
                   [](PyModel& model) { return model.session().model().config().vocab_size; })
      .def_prop_ro("context_length",
                   [](PyModel& model) { return model.session().context_length(); });

  m.def("load", &load, "path"_a, nb::kw_only(), "dtype"_a = nb::none(), "quantize"_a = nb::none(),
        "threads"_a = 0, "context_length"_a = 0, "mmproj"_a = nb::none(),
        "Loads a Hugging Face folder, .safetensors or .gguf file.");
}
