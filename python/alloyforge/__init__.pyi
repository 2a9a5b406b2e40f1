"""Type stubs of the alloyforge package (the native part is alloyforge._alloyforge)."""

from os import PathLike
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

# An image: a path, encoded bytes (JPEG, PNG, GIF, WebP, BMP; also bytearray/memoryview) or a
# NumPy uint8 RGB array of shape (height, width, 3). Taken by LLaVA models (an HF LLaVA folder,
# or a text GGUF loaded with mmproj=); a text-only model raises Error.
ImageInput = Union[str, PathLike, bytes, bytearray, memoryview, npt.NDArray[np.uint8]]
# Audio: a path, encoded bytes (WAV, FLAC, OGG, MP3) or NumPy float32 mono samples at 16 kHz.
# Whisper folders take it (SpeechModel.transcribe); text models raise Error(code="unsupported").
AudioInput = Union[str, PathLike, bytes, npt.NDArray[np.float32]]

class Error(RuntimeError):
    """An error of the AlloyForge library: str() is its message (naming the file, field or
    tensor at fault); code is "invalid_argument", "format", "io", "unsupported",
    "out_of_range" or "internal"."""

    code: str

class Timings:
    @property
    def prefill_ms(self) -> float: ...
    @property
    def decode_ms(self) -> float: ...
    @property
    def time_to_first_token_ms(self) -> float: ...
    @property
    def prompt_tokens_per_s(self) -> float: ...
    @property
    def generated_tokens_per_s(self) -> float: ...

class Response:
    """The outcome of generate() / chat(); str(response) is its text."""

    @property
    def text(self) -> str:
        """The generated text, without stop strings and end tokens."""
    @property
    def tokens(self) -> list[int]:
        """Every generated id (including a final end token)."""
    @property
    def finish_reason(self) -> str:
        """"stop" (end token or stop string), "length", "context_full" or "cancelled"."""
    @property
    def stop_string(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int:
        """Prompt tokens reused from the KV cache of the previous request."""
    @property
    def timings(self) -> Timings: ...

class Stream(Iterator[str]):
    """Pieces of generated text as they become final. Iterating waits without the GIL.
    Leaving it early (break, close(), or dropping it) stops the generation after the current
    token; the model is usable again once the stream ended or was closed."""

    def __iter__(self) -> Stream: ...
    def __next__(self) -> str: ...
    def close(self) -> None:
        """Stops the generation and waits for it (safe to call twice)."""
    @property
    def response(self) -> Response:
        """The Response, once the stream has ended (Error before)."""

class Tokenizer:
    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Text to ids. add_special: BOS etc. as the tokenizer's configuration says;
        parse_special: special-token text such as "</s>" becomes its control token."""
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Ids to text (Error for ids the vocabulary does not have)."""
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    def token_piece(self, id: int) -> str: ...

class Model:
    """A loaded model with its tokenizer, chat template and KV cache. One call at a time per
    model (a second concurrent one raises Error); separate models run in parallel threads."""

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        stop: Optional[Sequence[str]] = None,
        seed: int = 0,
        images: Optional[Sequence[ImageInput]] = None,
        audio: Optional[Sequence[AudioInput]] = None,
    ) -> Response:
        """Generates a continuation of prompt (temperature 0: greedy). The GIL is released
        while computing. images: for a LLaVA model, in prompt order; the prompt holds the
        model's image token ("<image>") once per image, or none (the images then go right
        after BOS)."""
    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        stop: Optional[Sequence[str]] = None,
        seed: int = 0,
        images: Optional[Sequence[ImageInput]] = None,
        audio: Optional[Sequence[AudioInput]] = None,
    ) -> Stream:
        """As generate(), yielding the text piece by piece."""
    def chat(
        self,
        messages: Sequence[Mapping[str, Union[str, Sequence[Mapping[str, object]]]]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        stop: Optional[Sequence[str]] = None,
        seed: int = 0,
        stream: bool = False,
        images: Optional[Sequence[ImageInput]] = None,
        audio: Optional[Sequence[AudioInput]] = None,
    ) -> Union[Response, Stream]:
        """The assistant's reply to messages ([{"role": ..., "content": ...}, ...]) with the
        model's chat template; special-token text in content stays plain text. stream=True
        returns a Stream. content is a string or a list of OpenAI-style parts:
        {"type": "text", "text": ...}, {"type": "image_url", "image_url": {"url": ...}} (a
        base64 data: URL, a file:// URL or a local path; no network) and
        {"type": "image", "image": ImageInput}; each image goes where it stands among the text.
        images: further images put before the text of the last user message."""
    def logits(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Logits of every position of ids run as a fresh sequence: shape (len(ids), vocab),
        float32, viewing the library's buffer (no copy)."""
    def cancel(self) -> None:
        """Asks a generation running on another thread to stop after the current token."""
    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def context_length(self) -> int: ...

class Transcription:
    @property
    def text(self) -> Optional[str]:
        """The text; None when the folder has no tokenizer.json."""
    @property
    def tokens(self) -> list[int]:
        """Generated ids (timestamps and the end token included)."""
    @property
    def language(self) -> str:
        """The language token used, given or detected ("<|en|>")."""

class SpeechModel:
    def transcribe(
        self,
        audio: AudioInput,
        *,
        language: str = "",
        task: str = "",
        timestamps: bool = False,
        max_new_tokens: int = 0,
    ) -> Transcription:
        """Greedy decoding of the first 30 s window as transformers' generate. language: "en"
        or "<|en|>" ("": detected); task: "transcribe" or "translate"; max_new_tokens 0: up to
        the model's max_length. The GIL is released while computing."""

def load(
    path: Union[str, PathLike],
    *,
    dtype: Optional[str] = None,
    quantize: Optional[str] = None,
    threads: int = 0,
    context_length: int = 0,
    mmproj: Optional[Union[str, PathLike]] = None,
) -> Union[Model, SpeechModel]:
    """Loads a Hugging Face folder, .safetensors file or .gguf file (a Whisper folder gives a
    SpeechModel). mmproj: llama.cpp's
    image-encoder GGUF to pair with a text GGUF (an HF LLaVA folder carries its own)."""

def from_native(
    capsule: object,
    *,
    tokenizer: Optional[Union[str, PathLike]] = None,
    eos_ids: Optional[Sequence[int]] = None,
    chat_template: Optional[str] = None,
) -> Model:
    """Wraps a C++ af::Model handed over by another extension module as a PyCapsule named
    "alloyforge.Model" (examples/python_custom_model); the capsule serves once."""
