// _alloyforge: the Python module over af::Session (nanobind). Long calls (load, generate,
// logits, waiting for a streamed piece) release the GIL, so threads using separate models run in
// parallel. Every af::Error becomes alloyforge.Error carrying the library's message and code.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
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
#include "af/core/model.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/image.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "af/tokenizer/tokenizer.hpp"
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

// Text and LLaVA models take no audio (a Whisper folder loads as a SpeechModel instead).
void refuse_audio(const nb::object& audio) {
  if (!audio.is_none()) {
    raise(af::ErrorCode::kUnsupported,
          "audio: this model takes no audio (for speech, load a Whisper folder and call "
          "transcribe())");
  }
}

std::string python_type_name(nb::handle item) {
  return nb::cast<std::string>(nb::str(nb::type_name(item.type())));
}

// A NumPy uint8 array (height, width, 3): copied into the image's own buffer (the array may be
// strided or a view of memory Python frees later).
af::modalities::Image image_from_array(nb::handle array, const std::string& where) {
  const auto dtype = nb::cast<std::string>(array.attr("dtype").attr("name"));
  std::vector<int64_t> shape;
  for (nb::handle d : nb::borrow<nb::tuple>(array.attr("shape"))) {
    shape.push_back(PyLong_AsLongLong(d.ptr()));
  }
  if (dtype != "uint8" || shape.size() != 3 || shape[2] != 3 || shape[0] < 1 || shape[1] < 1) {
    std::string dims;
    for (int64_t d : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    raise(af::ErrorCode::kInvalidArgument, where +
                                               ": a NumPy image must be uint8 RGB of shape "
                                               "(height, width, 3), got " +
                                               dtype + " (" + dims + ")");
  }
  if (shape[0] * shape[1] > static_cast<int64_t>(af::modalities::ImageLimits{}.max_pixels)) {
    raise(af::ErrorCode::kInvalidArgument,
          where + ": the array has more pixels than " +
              std::to_string(af::modalities::ImageLimits{}.max_pixels));
  }
  nb::bytes raw = nb::borrow<nb::bytes>(array.attr("tobytes")());  // C order, contiguous
  const auto* p = reinterpret_cast<const uint8_t*>(raw.c_str());
  return af::modalities::Image(static_cast<int>(shape[1]), static_cast<int>(shape[0]),
                               std::vector<uint8_t>(p, p + raw.size()));
}

// One image as Python code holds it: a path (str or os.PathLike), encoded bytes (or any
// bytes-like object: bytearray, memoryview) or a NumPy uint8 array (height, width, 3).
af::modalities::Image to_image(nb::handle item, const std::string& where) {
  if (nb::isinstance<nb::str>(item))
    return af::modalities::Image::load(nb::cast<std::string>(item));
  if (nb::hasattr(item, "__fspath__")) {
    return af::modalities::Image::load(nb::cast<std::string>(nb::str(item.attr("__fspath__")())));
  }
  if (nb::hasattr(item, "__array_interface__")) return image_from_array(item, where);
  if (PyObject_CheckBuffer(item.ptr())) {
    nb::object raw = nb::steal(PyBytes_FromObject(item.ptr()));
    if (!raw.is_valid()) throw nb::python_error();
    nb::bytes bytes = nb::borrow<nb::bytes>(raw);
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.c_str());
    return af::modalities::Image::decode({p, bytes.size()}, where);
  }
  raise(af::ErrorCode::kInvalidArgument,
        where + ": expected a path, bytes or a NumPy uint8 array (height, width, 3), got " +
            python_type_name(item));
}

std::vector<af::modalities::Image> to_images(const nb::object& images) {
  std::vector<af::modalities::Image> out;
  if (images.is_none()) return out;
  if (nb::isinstance<nb::str>(images) || nb::isinstance<nb::bytes>(images) ||
      nb::hasattr(images, "__array_interface__") || nb::hasattr(images, "__fspath__") ||
      !nb::hasattr(images, "__iter__")) {
    raise(af::ErrorCode::kInvalidArgument,
          "images: expected a list of images (paths, bytes or NumPy arrays), got one " +
              python_type_name(images));
  }
  for (nb::handle item : images) {
    out.push_back(to_image(item, "images[" + std::to_string(out.size()) + "]"));
  }
  return out;
}

// An OpenAI image_url (a data: URL with base64, a file:// URL or a local path). Remote URLs are
// refused: the library reads no network.
af::modalities::Image image_from_url(nb::handle part, const std::string& where) {
  nb::object url_field = nb::borrow(part["image_url"]);
  if (nb::isinstance<nb::dict>(url_field)) {
    nb::dict d = nb::borrow<nb::dict>(url_field);
    if (!d.contains("url"))
      raise(af::ErrorCode::kInvalidArgument, where + ".image_url: needs \"url\"");
    url_field = nb::borrow(d["url"]);
  }
  if (!nb::isinstance<nb::str>(url_field)) {
    raise(af::ErrorCode::kInvalidArgument, where + ".image_url: expected a string URL");
  }
  const auto url = nb::cast<std::string>(url_field);
  if (url.rfind("data:", 0) == 0) {
    const size_t comma = url.find(',');
    if (comma == std::string::npos || url.substr(0, comma).find(";base64") == std::string::npos) {
      raise(af::ErrorCode::kInvalidArgument, where + ".image_url: a data: URL must be base64");
    }
    nb::object decoded;
    try {
      decoded = nb::module_::import_("base64").attr("b64decode")(url.substr(comma + 1),
                                                                 "validate"_a = true);
    } catch (const nb::python_error&) {
      raise(af::ErrorCode::kInvalidArgument, where + ".image_url: invalid base64 in the data: URL");
    }
    return to_image(decoded, where);
  }
  if (url.rfind("file://", 0) == 0) return af::modalities::Image::load(url.substr(7));
  if (url.find("://") != std::string::npos) {
    raise(af::ErrorCode::kUnsupported,
          where + ".image_url: only data:, file:// URLs and local paths are read (no network)");
  }
  return af::modalities::Image::load(url);
}

// content as a string, or a list of OpenAI-style parts: {"type": "text", "text": ...},
// {"type": "image_url", "image_url": {"url": ...}} and {"type": "image", "image": <path, bytes or
// array>}. Each image is placed where it stands among the text parts.
void parse_content(nb::handle content, af::ChatMessage& message, const std::string& where) {
  if (nb::isinstance<nb::str>(content)) {
    message.content = nb::cast<std::string>(content);
    return;
  }
  if (!nb::isinstance<nb::list>(content) && !nb::isinstance<nb::tuple>(content)) {
    raise(af::ErrorCode::kInvalidArgument,
          where + ".content: expected a string or a list of parts");
  }
  size_t index = 0;
  for (nb::handle item : content) {
    const std::string at = where + ".content[" + std::to_string(index++) + "]";
    if (!nb::isinstance<nb::dict>(item) || !nb::borrow<nb::dict>(item).contains("type")) {
      raise(af::ErrorCode::kInvalidArgument, at + ": expected a dict with \"type\"");
    }
    nb::dict part = nb::borrow<nb::dict>(item);
    const auto type = nb::cast<std::string>(part["type"]);
    if (type == "text" && part.contains("text")) {
      message.content += nb::cast<std::string>(part["text"]);
    } else if (type == "image_url" && part.contains("image_url")) {
      message.images.push_back(image_from_url(part, at));
      message.image_offsets.push_back(message.content.size());
    } else if (type == "image" && part.contains("image")) {
      message.images.push_back(to_image(nb::borrow(part["image"]), at + ".image"));
      message.image_offsets.push_back(message.content.size());
    } else {
      raise(af::ErrorCode::kInvalidArgument,
            at + ": unknown part \"" + type +
                "\" (text with \"text\", image_url with \"image_url\", image with \"image\")");
    }
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
  af::models::LoadOptions options;
  if (!mmproj.is_none()) options.mmproj = nb::cast<std::string>(nb::str(mmproj));
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

// The hook for C++ models written outside the library (examples/python_custom_model): another
// extension module hands over an af::Model in a PyCapsule named "alloyforge.Model" whose pointer
// is a heap std::unique_ptr<af::Model>* (deleted by the capsule's destructor). The model is
// moved out, so a capsule serves once; both modules must be built with the same compiler and
// AlloyForge headers (the virtual calls cross the module boundary).
std::shared_ptr<PyModel> from_native(nb::handle capsule,
                                     const std::optional<std::string>& tokenizer,
                                     const std::optional<std::vector<int32_t>>& eos_ids,
                                     const std::optional<std::string>& chat_template) {
  constexpr const char* kName = "alloyforge.Model";
  if (!PyCapsule_IsValid(capsule.ptr(), kName)) {
    raise(af::ErrorCode::kInvalidArgument,
          "from_native: expected a PyCapsule named \"alloyforge.Model\", got " +
              python_type_name(capsule));
  }
  auto* holder =
      static_cast<std::unique_ptr<af::Model>*>(PyCapsule_GetPointer(capsule.ptr(), kName));
  if (holder == nullptr || !*holder) {
    raise(af::ErrorCode::kInvalidArgument,
          "from_native: the capsule's model was already taken (a capsule serves once)");
  }
  af::SessionBuilder builder;
  if (tokenizer) builder.tokenizer_path(*tokenizer);
  if (eos_ids) builder.eos_ids(*eos_ids);
  builder.chat_template(chat_template.value_or(std::string(af::runtime::kChatMlTemplate)));
  std::unique_ptr<af::Model> model = std::move(*holder);
  nb::gil_scoped_release release;
  return std::make_shared<PyModel>(builder.build(std::move(model)));
}

// `images` (the chat(images=...) list) go before the content of the last user message.
std::vector<af::ChatMessage> to_messages(const nb::list& messages, const nb::object& images) {
  std::vector<af::ChatMessage> out;
  for (nb::handle item : messages) {
    const std::string where = "messages[" + std::to_string(out.size()) + "]";
    if (!nb::isinstance<nb::dict>(item)) {
      raise(af::ErrorCode::kInvalidArgument, where + ": expected a dict with role and content");
    }
    nb::dict message = nb::borrow<nb::dict>(item);
    if (!message.contains("role") || !message.contains("content")) {
      raise(af::ErrorCode::kInvalidArgument, where + ": needs \"role\" and \"content\"");
    }
    af::ChatMessage m;
    m.role = nb::cast<std::string>(message["role"]);
    parse_content(message["content"], m, where);
    out.push_back(std::move(m));
  }
  if (out.empty()) raise(af::ErrorCode::kInvalidArgument, "messages: no messages");
  std::vector<af::modalities::Image> extra = to_images(images);
  if (extra.empty()) return out;
  auto user = std::find_if(out.rbegin(), out.rend(),
                           [](const af::ChatMessage& m) { return m.role == "user"; });
  if (user == out.rend()) {
    raise(af::ErrorCode::kInvalidArgument,
          "images: the messages have no user message to attach them to");
  }
  if (user->image_offsets.empty()) user->image_offsets.assign(user->images.size(), 0);
  user->images.insert(user->images.begin(), extra.begin(), extra.end());
  user->image_offsets.insert(user->image_offsets.begin(), extra.size(), 0);
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

af::GenerateResponse generate(PyModel& model, const std::string& prompt,
                              std::vector<af::modalities::Image> images, const Options& options,
                              const std::optional<std::vector<af::ChatMessage>>& messages) {
  af::GenerateRequest request = to_request(options);
  request.prompt = prompt;
  request.images = std::move(images);
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

// Audio as Python code holds it: a path, encoded bytes (bytes-like) or a NumPy float32 array of
// mono samples at 16 kHz.
af::modalities::Audio to_audio(nb::handle item) {
  if (nb::isinstance<nb::str>(item))
    return af::modalities::Audio::load(nb::cast<std::string>(item));
  if (nb::hasattr(item, "__fspath__")) {
    return af::modalities::Audio::load(nb::cast<std::string>(item.attr("__fspath__")()));
  }
  if (nb::hasattr(item, "__array_interface__")) {
    const auto dtype = nb::cast<std::string>(item.attr("dtype").attr("name"));
    const auto ndim = nb::cast<int64_t>(item.attr("ndim"));
    if (dtype != "float32" || ndim != 1) {
      raise(af::ErrorCode::kInvalidArgument,
            "audio: a NumPy array must be float32 mono samples at 16 kHz (1-D), got " + dtype +
                " with " + std::to_string(ndim) + " dimensions");
    }
    nb::bytes raw = nb::borrow<nb::bytes>(item.attr("tobytes")());
    std::vector<float> samples(raw.size() / sizeof(float));
    std::memcpy(samples.data(), raw.c_str(), samples.size() * sizeof(float));
    return af::modalities::Audio::from_samples(std::move(samples),
                                               af::modalities::Audio::kSampleRate, "audio");
  }
  if (PyObject_CheckBuffer(item.ptr())) {
    nb::object raw = nb::steal(PyBytes_FromObject(item.ptr()));
    if (!raw.is_valid()) throw nb::python_error();
    nb::bytes bytes = nb::borrow<nb::bytes>(raw);
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.c_str());
    return af::modalities::Audio::decode({p, bytes.size()}, "audio");
  }
  raise(af::ErrorCode::kInvalidArgument,
        "audio: expected a path, bytes or a NumPy float32 array (16 kHz mono), got " +
            python_type_name(item));
}

struct Transcription {
  std::optional<std::string> text;  // None without a tokenizer.json beside the model
  std::vector<int32_t> tokens;      // the generated ids, timestamps and end token included
  std::string language;             // the language token used ("<|en|>"), given or detected
};

// A Whisper folder: greedy decoding of the first 30 s window as transformers' generate.
class SpeechModel {
 public:
  SpeechModel(const std::string& path, const af::models::LoadOptions& options)
      : model_(af::models::Whisper::load(path, options)),
        config_(af::models::WhisperGenerationConfig::load(path)),
        extractor_(af::modalities::LogMelConfig::load(path)) {
    if (std::filesystem::exists(std::filesystem::path(path) / "tokenizer.json")) {
      tokenizer_ = af::tok::Tokenizer::load(path);
    }
  }

  Transcription transcribe(const af::modalities::Audio& audio,
                           const af::models::WhisperGenerateOptions& options) {
    if (busy_.exchange(true)) {
      raise(af::ErrorCode::kInvalidArgument,
            "the model is busy: another thread is transcribing with it");
    }
    struct Release {
      std::atomic<bool>* flag;
      ~Release() { flag->store(false); }
    } release{&busy_};
    const af::modalities::LogMel mel = extractor_.compute(audio.samples());
    const af::models::WhisperGeneration g =
        af::models::whisper_generate(*model_, mel.data, config_, options);
    Transcription out;
    out.tokens = g.tokens;
    for (const auto& [name, id] : config_.lang_to_id) {
      if (id == g.language_id) out.language = name;
    }
    if (tokenizer_) {
      std::vector<int32_t> text_ids;  // timestamps and the end token are not text
      for (int32_t id : g.tokens) {
        if (id < config_.eos_token_id || config_.eos_token_id < 0) text_ids.push_back(id);
      }
      out.text = tokenizer_->decode(text_ids, true);
    }
    return out;
  }

 private:
  std::unique_ptr<af::models::Whisper> model_;
  af::models::WhisperGenerationConfig config_;
  af::modalities::LogMelExtractor extractor_;
  std::unique_ptr<af::tok::Tokenizer> tokenizer_;
  std::atomic<bool> busy_{false};
};

std::unique_ptr<SpeechModel> load_whisper(const std::string& path, int threads) {
  if (threads < 0) raise(af::ErrorCode::kInvalidArgument, "threads must be >= 0");
  af::models::LoadOptions options;
  options.num_threads = threads;
  nb::gil_scoped_release release;
  return std::make_unique<SpeechModel>(path, options);
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
            refuse_audio(audio);
            return generate(model, prompt, to_images(images),
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
            refuse_audio(audio);
            af::GenerateRequest request =
                to_request(make_options(max_tokens, temperature, top_p, top_k, min_p,
                                        repetition_penalty, std::move(stop), seed));
            request.prompt = prompt;
            request.images = to_images(images);
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
            refuse_audio(audio);
            const Options options = make_options(max_tokens, temperature, top_p, top_k, min_p,
                                                 repetition_penalty, std::move(stop), seed);
            std::vector<af::ChatMessage> chat = to_messages(messages, images);
            if (stream) {
              return nb::cast(
                  new Stream(model.shared_from_this(), to_request(options), std::move(chat)),
                  nb::rv_policy::take_ownership);
            }
            return nb::cast(generate(model, "", {}, options, std::move(chat)));
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
  nb::class_<Transcription>(m, "Transcription")
      .def_ro("text", &Transcription::text)
      .def_ro("tokens", &Transcription::tokens)
      .def_ro("language", &Transcription::language)
      .def("__str__", [](const Transcription& t) { return t.text.value_or(""); });

  nb::class_<SpeechModel>(m, "SpeechModel")
      .def(
          "transcribe",
          [](SpeechModel& model, nb::handle audio, const std::string& language,
             const std::string& task, bool timestamps, int64_t max_new_tokens) {
            if (task != "" && task != "transcribe" && task != "translate") {
              raise(af::ErrorCode::kInvalidArgument,
                    "task: \"" + task + "\" is neither \"transcribe\" nor \"translate\"");
            }
            if (max_new_tokens < 0) {
              raise(af::ErrorCode::kInvalidArgument, "max_new_tokens must be >= 0");
            }
            const af::modalities::Audio samples = to_audio(audio);
            nb::gil_scoped_release release;
            return model.transcribe(samples, {language, task, timestamps, max_new_tokens});
          },
          "audio"_a, nb::kw_only(), "language"_a = "", "task"_a = "", "timestamps"_a = false,
          "max_new_tokens"_a = 0,
          "Greedy transcription (or translation) of the first 30 s window, as transformers' "
          "generate; returns a Transcription.");
  m.def("load_whisper", &load_whisper, "path"_a, nb::kw_only(), "threads"_a = 0,
        "Loads a Whisper HF folder.");
  m.def("from_native", &from_native, "capsule"_a, nb::kw_only(), "tokenizer"_a = nb::none(),
        "eos_ids"_a = nb::none(), "chat_template"_a = nb::none(),
        "Wraps a C++ af::Model handed over by another extension module (a PyCapsule named "
        "\"alloyforge.Model\") as a Model.");
}
