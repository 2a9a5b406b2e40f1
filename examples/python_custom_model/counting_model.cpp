// A C++ af::Model used from Python: the counting model of examples/custom_model.cpp built as its
// own nanobind module. counting_model.make(vocab) returns a PyCapsule that
// alloyforge.from_native() turns into an alloyforge.Model (generate, stream, chat, logits).
//
// The module needs only AlloyForge's headers: af::Model is an interface whose virtual calls the
// library (inside alloyforge's own module) makes into this one, so both must be built with the
// same compiler and the same AlloyForge version.
#include <nanobind/nanobind.h>

#include <memory>
#include <vector>

#include "af/core/model.hpp"

namespace nb = nanobind;

namespace {

// Predicts the successor of the last token it has seen, (last + 1) modulo the vocabulary, with a
// margin that makes greedy decoding deterministic.
class CountingModel : public af::Model {
 public:
  explicit CountingModel(int64_t vocab) : vocab_(vocab) {}

  void reset_state() override { seen_ = 0; }

  std::vector<float> forward_step(std::span<const int32_t> ids) override {
    seen_ += static_cast<int64_t>(ids.size());
    std::vector<float> logits(static_cast<size_t>(vocab_), 0.0f);
    logits[static_cast<size_t>((ids.back() + 1) % vocab_)] = 10.0f;
    return logits;
  }

  af::ModelConfig config() const override {
    return {.vocab_size = vocab_, .max_position_embeddings = 1024};
  }

 private:
  int64_t vocab_;
  int64_t seen_ = 0;  // a real model keeps its KV cache here
};

// The capsule alloyforge.from_native() expects: named "alloyforge.Model", holding a heap
// std::unique_ptr<af::Model>*. from_native moves the model out; the destructor frees the holder
// (and the model, if nobody took it).
nb::object make(int64_t vocab) {
  if (vocab < 2) throw nb::value_error("vocab must be at least 2");
  auto* holder = new std::unique_ptr<af::Model>(std::make_unique<CountingModel>(vocab));
  PyObject* capsule = PyCapsule_New(holder, "alloyforge.Model", [](PyObject* self) {
    delete static_cast<std::unique_ptr<af::Model>*>(PyCapsule_GetPointer(self, "alloyforge.Model"));
  });
  if (capsule == nullptr) {
    delete holder;
    throw nb::python_error();
  }
  return nb::steal(capsule);
}

}  // namespace

NB_MODULE(counting_model, m) {
  m.doc() = "A toy C++ af::Model for alloyforge.from_native()";
  m.def("make", &make, nb::arg("vocab"),
        "A capsule holding a CountingModel of `vocab` ids, for alloyforge.from_native().");
}
