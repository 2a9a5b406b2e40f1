"""AlloyForge: run large language models on the CPU, exactly.

    import alloyforge
    model = alloyforge.load("stories260K.gguf", threads=2)
    print(model.generate("Once upon a time", max_tokens=32).text)
    for piece in model.stream("Once upon a time", max_tokens=32):
        print(piece, end="", flush=True)
    reply = model.chat([{"role": "user", "content": "Hello"}])
    logits = model.logits(model.tokenizer.encode("Once upon a time"))  # NumPy (n, vocab)
    llava = alloyforge.load("llava-1.5-7b-hf")  # or load("text.gguf", mmproj="mmproj.gguf")
    llava.generate("USER: <image>\nWhat is this? ASSISTANT:", images=["cat.jpg"])
    llava.chat([{"role": "user", "content": [{"type": "image", "image": "cat.jpg"},
                                             {"type": "text", "text": "What is this?"}]}])

Every failure of the library raises alloyforge.Error with the library's message (naming the
file, field or tensor at fault) and a ``code`` ("invalid_argument", "format", "io",
"unsupported", "out_of_range", "internal").
"""

from __future__ import annotations

from . import _alloyforge
import json
import os

from ._alloyforge import Model, Response, SpeechModel, Stream, Timings, Tokenizer, Transcription

__all__ = ["Error", "Model", "Response", "SpeechModel", "Stream", "Timings", "Tokenizer",
           "Transcription", "from_native", "load"]
__version__ = "0.1.0"


class Error(RuntimeError):
    """An error of the AlloyForge library; ``code`` names its kind, str() gives the message."""

    code: str = "internal"


_alloyforge._set_error_type(Error)


def _is_whisper(path) -> bool:
    """An HF folder whose config.json names WhisperForConditionalGeneration."""
    config = os.path.join(str(path), "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            architectures = json.load(f).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False  # the library's loader reports a bad config.json with its own message
    return "WhisperForConditionalGeneration" in architectures


def load(path, *, dtype=None, quantize=None, threads=0, context_length=0, mmproj=None) -> Model:
    """Loads a model: a Hugging Face folder, a .safetensors file or a .gguf file.

    dtype: storage type of the matmul weights ("f32", "f16", "bf16", "q8_0", ...); None keeps
    them as stored. quantize: quantize float weights at load ("q8_0", "q4_0", "q4_k", ...).
    threads: 0 uses all hardware threads. context_length: KV cache rows (0: the model's).
    mmproj: llama.cpp's image-encoder GGUF for a text GGUF of a LLaVA model (an HF LLaVA folder
    needs none); images then go to generate/stream/chat as paths, bytes or NumPy arrays.
    A Whisper folder gives a SpeechModel: model.transcribe(audio) (path, bytes or float32 16 kHz
    mono samples). The chat template is the model's own, or ChatML when it ships none.
    """
    if _is_whisper(path):
        given = [name for name, value in (("dtype", dtype), ("quantize", quantize),
                                          ("context_length", context_length), ("mmproj", mmproj))
                 if value]
        if given:
            error = Error(f"{path}: a Whisper model takes no {', '.join(given)}")
            error.code = "invalid_argument"
            raise error
        return _alloyforge.load_whisper(str(path), threads=threads)
    return _alloyforge.load(str(path), dtype=dtype, quantize=quantize, threads=threads,
                            context_length=context_length,
                            mmproj=None if mmproj is None else str(mmproj))


def from_native(capsule, *, tokenizer=None, eos_ids=None, chat_template=None) -> Model:
    """Wraps a C++ af::Model that another extension module hands over as a PyCapsule named
    "alloyforge.Model" (a heap std::unique_ptr<af::Model>*; examples/python_custom_model).

    tokenizer: a tokenizer.json, HF folder or GGUF to read text with (None: none; logits(ids)
    still works). eos_ids: the ids that end generation. chat_template: Jinja source (ChatML by
    default). The capsule serves once; both modules must be built with the same compiler and
    AlloyForge headers.
    """
    return _alloyforge.from_native(capsule, tokenizer=None if tokenizer is None else str(tokenizer),
                                   eos_ids=eos_ids, chat_template=chat_template)
