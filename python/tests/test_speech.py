"""Whisper through the alloyforge module on the tiny transformers-made fixture
(tests/fixtures/whisper/tiny, tools/make_whisper_fixtures.py): greedy ids equal transformers'
generate (as tests/e2e/test_cli_whisper.cpp checks af-cli transcribe), audio as a path, bytes
and NumPy samples, and clear errors."""

import json
import os
import pathlib
import wave

import numpy as np
import pytest

import alloyforge

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = pathlib.Path(os.environ.get("AF_TESTDATA", ROOT.parent / "shared" / "testdata"))
TINY = ROOT / "tests" / "fixtures" / "whisper" / "tiny"
REFERENCE = json.loads((TINY.parent / "tiny_reference.json").read_text())
JFK = TESTDATA / "audio" / "jfk_16k.wav"


@pytest.fixture(scope="module")
def whisper():
    return alloyforge.load(TINY, threads=2)


def jfk_samples():
    """jfk_16k.wav (16-bit mono PCM at 16 kHz) as float32 samples in [-1, 1)."""
    with wave.open(str(JFK)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def test_transcribe_ids_equal_transformers_generate(whisper):
    assert isinstance(whisper, alloyforge.SpeechModel)
    want = REFERENCE["generate"]["language_de"]["ids"]
    result = whisper.transcribe(JFK, language="de", max_new_tokens=20)
    assert result.tokens == want
    assert result.language == "<|de|>"
    assert result.text is None  # the fixture ships no tokenizer.json
    detected = whisper.transcribe(str(JFK), max_new_tokens=20)
    assert detected.tokens == REFERENCE["generate"]["detect"]["ids"]


def test_paths_bytes_and_samples_give_the_same_ids(whisper):
    want = whisper.transcribe(JFK, language="de", max_new_tokens=8).tokens
    assert whisper.transcribe(JFK.read_bytes(), language="de", max_new_tokens=8).tokens == want
    assert whisper.transcribe(jfk_samples(), language="de", max_new_tokens=8).tokens == want


def test_bad_audio_and_options_raise_clear_errors(whisper):
    with pytest.raises(alloyforge.Error, match="float32 mono samples"):
        whisper.transcribe(np.zeros(1600), max_new_tokens=2)
    with pytest.raises(alloyforge.Error, match="\\[audio\\]"):
        whisper.transcribe(b"not audio", max_new_tokens=2)
    with pytest.raises(alloyforge.Error, match="expected a path, bytes"):
        whisper.transcribe(3, max_new_tokens=2)
    with pytest.raises(alloyforge.Error, match="task"):
        whisper.transcribe(JFK, task="summarize", max_new_tokens=2)
    with pytest.raises(alloyforge.Error, match="takes no quantize") as error:
        alloyforge.load(TINY, quantize="q8_0")
    assert error.value.code == "invalid_argument"
    # Text models still refuse audio.
    text = alloyforge.load(TESTDATA / "models" / "stories260K" / "stories260K.gguf", threads=1)
    with pytest.raises(alloyforge.Error, match="audio") as error:
        text.generate("Once", audio=[JFK], max_tokens=2)
    assert error.value.code == "unsupported"
