"""The alloyforge module on stories260K: generation, streaming (also abandoned half way),
chat, logits without a copy, the tokenizer, errors, and threads on separate models."""

import gc
import os
import pathlib
import threading
import time

import numpy as np
import pytest

import alloyforge

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = pathlib.Path(os.environ.get("AF_TESTDATA", ROOT.parent / "shared" / "testdata"))
GGUF = TESTDATA / "models" / "stories260K" / "stories260K.gguf"
HF = TESTDATA / "models" / "stories260K-hf"
PROMPT = "Once upon a time"
# The greedy continuation (testdata's expected_once_upon_a_time.txt begins so).
LILY = ", there was a little girl named Lily"


@pytest.fixture(scope="module")
def model():
    return alloyforge.load(GGUF, threads=1)


def native_threads():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_generate_greedy_equals_the_reference(model):
    response = model.generate(PROMPT, max_tokens=48)
    assert response.text.startswith(LILY)
    assert str(response) == response.text
    assert len(response.tokens) == 48
    assert response.finish_reason == "length"
    assert response.prompt_tokens == 5
    assert response.timings.decode_ms > 0
    assert response.timings.generated_tokens_per_s > 0


def test_hf_folder_and_gguf_agree():
    hf = alloyforge.load(HF, dtype="f32", threads=1)
    assert hf.generate(PROMPT, max_tokens=16).tokens == alloyforge.load(GGUF, threads=1).generate(
        PROMPT, max_tokens=16).tokens


def test_stop_strings_and_seeds(model):
    stopped = model.generate(PROMPT, max_tokens=48, stop=["Lily"])
    assert stopped.text == ", there was a little girl named "
    assert stopped.finish_reason == "stop"
    assert stopped.stop_string == "Lily"
    a = model.generate(PROMPT, max_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    b = model.generate(PROMPT, max_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    c = model.generate(PROMPT, max_tokens=24, temperature=1.0, top_p=0.9, seed=8)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_stream_yields_the_generated_text(model):
    stream = model.stream(PROMPT, max_tokens=48)
    pieces = list(stream)
    assert len(pieces) > 10
    assert "".join(pieces) == model.generate(PROMPT, max_tokens=48).text
    assert stream.response.finish_reason == "length"


def test_stream_abandoned_half_way_stops_and_frees_the_model(model):
    threads_before = native_threads()
    stream = model.stream(PROMPT, max_tokens=100)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    assert stream.response.finish_reason == "cancelled"
    assert len(stream.response.tokens) < 20  # it stopped near where it was read
    # Dropping an unfinished stream without close() ends its thread too.
    dropped = model.stream(PROMPT, max_tokens=100)
    next(dropped)
    del dropped
    gc.collect()
    assert native_threads() == threads_before
    start = time.monotonic()
    assert model.generate(PROMPT, max_tokens=8).text.startswith(", there")
    assert time.monotonic() - start < 5


def test_abandoned_streams_do_not_leak(model):
    def abandon(n):
        for _ in range(n):
            stream = model.stream(PROMPT, max_tokens=100)
            next(stream)
            del stream

    abandon(50)  # warm-up: allocator pools, the KV cache
    gc.collect()
    before = rss_kib()
    abandon(500)
    gc.collect()
    assert rss_kib() - before < 8 * 1024, "500 abandoned streams grew RSS by more than 8 MiB"


def test_an_open_stream_makes_the_model_busy_not_hang(model):
    stream = model.stream(PROMPT, max_tokens=100)
    next(stream)
    # The generation waits for its reader (a few pieces ahead at most), so it cannot be done.
    with pytest.raises(alloyforge.Error, match="busy"):
        model.generate(PROMPT, max_tokens=1)
    stream.close()
    assert len(model.generate(PROMPT, max_tokens=1).tokens) == 1


def test_chat_uses_the_template_and_can_stream(model):
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    reply = model.chat(messages, max_tokens=8)
    assert 1 <= len(reply.tokens) <= 8
    assert reply.prompt_tokens > 10  # ChatML markers (stories260K ships no template)
    streamed = model.chat(messages, max_tokens=8, stream=True)
    assert "".join(streamed) == reply.text
    with pytest.raises(alloyforge.Error, match="role"):
        model.chat([{"content": "no role"}])


def test_logits_are_a_numpy_view_of_every_position(model):
    ids = model.tokenizer.encode(PROMPT)
    logits = model.logits(ids)
    assert isinstance(logits, np.ndarray)
    assert logits.shape == (len(ids), model.vocab_size) == (5, 512)
    assert logits.dtype == np.float32
    assert not logits.flags.owndata  # views the library's buffer: no copy
    assert np.isfinite(logits).all()
    first = model.generate(PROMPT, max_tokens=1).tokens[0]
    assert int(np.argmax(logits[-1])) == first
    again = model.logits(ids)
    np.testing.assert_array_equal(logits, again)
    with pytest.raises(alloyforge.Error, match="7000"):
        model.logits([1, 7000])


def test_tokenizer_round_trip(model):
    tok = model.tokenizer
    ids = tok.encode(PROMPT)
    assert ids[0] == tok.bos_id == 1
    assert tok.decode(ids) == PROMPT
    assert tok.encode(PROMPT, add_special=False) == ids[1:]
    assert tok.vocab_size == 512
    with pytest.raises(alloyforge.Error) as error:
        tok.decode([100000])
    assert error.value.code == "invalid_argument"


def test_errors_carry_the_library_message():
    with pytest.raises(alloyforge.Error, match="/nonexistent/model.gguf") as error:
        alloyforge.load("/nonexistent/model.gguf")
    assert error.value.code in ("io", "invalid_argument")
    with pytest.raises(alloyforge.Error, match="dtype"):
        alloyforge.load(GGUF, dtype="q9_9")
    # mmproj pairs with a LLaVA text model: stories260K has no image token.
    with pytest.raises(alloyforge.Error, match='stories260K.gguf: no "<image>" token'):
        alloyforge.load(GGUF, mmproj="projector.gguf")


def test_images_and_audio_are_refused_clearly(model):
    # A text-only model names the cause (vision: test_vision.py).
    with pytest.raises(alloyforge.Error, match="text-only"):
        model.generate(PROMPT, images=[TESTDATA / "images" / "camera.png"])
    with pytest.raises(alloyforge.Error, match="audio"):
        model.chat([{"role": "user", "content": "hi"}], audio=[np.zeros(16, np.float32)])
    with pytest.raises(alloyforge.Error, match="max_tokens"):
        model.generate(PROMPT, max_tokens=0)


def test_threads_generate_on_separate_models_concurrently():
    models = [alloyforge.load(GGUF, threads=1) for _ in range(4)]
    results = [None] * len(models)
    errors = []

    def run(i):
        try:
            results[i] = [models[i].generate(PROMPT, max_tokens=64).text for _ in range(5)]
        except Exception as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a generating thread hung"
    assert not errors
    expected = models[0].generate(PROMPT, max_tokens=64).text
    assert all(text == expected for texts in results for text in texts)


def test_cancel_from_another_thread_ends_a_running_stream(model):
    stream = model.stream(PROMPT, max_tokens=100)
    next(stream)
    canceller = threading.Thread(target=model.cancel)
    canceller.start()
    canceller.join()
    rest = list(stream)  # ends soon: the generation stopped after its current token
    assert len(rest) < 20
    assert stream.response.finish_reason == "cancelled"
