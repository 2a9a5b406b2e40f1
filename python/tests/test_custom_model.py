"""A C++ af::Model from another extension module (examples/python_custom_model) used through
alloyforge.from_native(): the example builds (CMake, nanobind, AlloyForge's headers only) and
generates the ids its model predicts."""

import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import alloyforge

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = pathlib.Path(os.environ.get("AF_TESTDATA", ROOT.parent / "shared" / "testdata"))
EXAMPLE = ROOT / "examples" / "python_custom_model"
# Kept between runs so that a second run only checks the build.
BUILD = ROOT / "build" / "python-counting-model"
VOCAB = 512  # stories260K's tokenizer


@pytest.fixture(scope="module")
def counting_model():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    configure = ["cmake", "-S", str(EXAMPLE), "-B", str(BUILD), f"-DPython_EXECUTABLE={sys.executable}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    if shutil.which("ccache"):
        configure += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    for command in (configure, ["cmake", "--build", str(BUILD)]):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(BUILD))
    try:
        return importlib.import_module("counting_model")
    finally:
        sys.path.remove(str(BUILD))


def test_a_cpp_model_generates_through_the_module(counting_model):
    model = alloyforge.from_native(counting_model.make(VOCAB),
                                   tokenizer=str(TESTDATA / "models" / "stories260K-hf"),
                                   eos_ids=[0])
    assert model.vocab_size == VOCAB
    last = model.tokenizer.encode("Once upon a time")[-1]
    response = model.generate("Once upon a time", max_tokens=6)
    assert response.tokens == [(last + k) % VOCAB for k in range(1, 7)]
    assert response.finish_reason == "length"
    assert "".join(model.stream("Once upon a time", max_tokens=6)) == response.text
    with pytest.raises(alloyforge.Error, match="logits"):  # every position: built-in models only
        model.logits([3, 4])
    # Counting wraps to 0, the end id given: generation stops there.
    assert model.generate("a", max_tokens=600).finish_reason == "stop"


def test_a_capsule_serves_once_and_other_objects_are_refused(counting_model):
    capsule = counting_model.make(16)
    alloyforge.from_native(capsule)
    with pytest.raises(alloyforge.Error, match="already taken"):
        alloyforge.from_native(capsule)
    with pytest.raises(alloyforge.Error, match="PyCapsule named \"alloyforge.Model\""):
        alloyforge.from_native(object())
