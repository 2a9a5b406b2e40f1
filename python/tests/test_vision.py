"""Images through the alloyforge module on the tiny transformers-made LLaVA fixture
(tests/fixtures/models/llava_clip, tools/make_llava_fixtures.py): greedy ids equal
transformers' generate (as tests/e2e/test_cli_llava.cpp checks af-cli run), from the HF folder
and from the text GGUF with its mmproj; images as paths, bytes and NumPy arrays; chat with
OpenAI-style content parts; and the errors of bad images or a text-only model."""

import base64
import json
import os
import pathlib
import struct

import numpy as np
import pytest

import alloyforge

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = pathlib.Path(os.environ.get("AF_TESTDATA", ROOT.parent / "shared" / "testdata"))
LLAVA = ROOT / "tests" / "fixtures" / "models" / "llava_clip"
REFERENCE = json.loads((LLAVA / "reference.json").read_text())
CAMERA = TESTDATA / "images" / "camera.png"
STORIES = TESTDATA / "models" / "stories260K" / "stories260K.gguf"


def image_path(name):
    """"testdata:camera.png" or a path relative to the repository, as the reference names it."""
    if name.startswith("testdata:"):
        return TESTDATA / "images" / name[len("testdata:"):]
    return ROOT / name


def expected_ids(prompt):
    """transformers' greedy ids without the final EOS (2), up to the first id past the
    tokenizer's 513 (the embedding has padding rows a session never samples)."""
    want = list(prompt["generate_ids"])
    if want and want[-1] == 2:
        want.pop()
    for i, token in enumerate(want):
        if token > 512:
            return want[:i]
    return want


@pytest.fixture(scope="module")
def llava():
    return alloyforge.load(LLAVA, threads=2)


@pytest.mark.parametrize("prompt", REFERENCE["prompts"], ids=lambda p: p["name"])
def test_generate_with_images_equals_transformers(llava, prompt):
    want = expected_ids(prompt)
    images = [image_path(name) for name in prompt["images"]]
    response = llava.generate(prompt["text"], images=images, max_tokens=len(prompt["generate_ids"]))
    assert response.tokens[: len(want)] == want
    assert response.prompt_tokens == prompt["logits_shape"][0]  # placeholders expanded


def test_text_gguf_with_mmproj_equals_transformers(llava):
    model = alloyforge.load(LLAVA / "text-model-f32.gguf", mmproj=LLAVA / "mmproj-model-f32.gguf",
                            threads=2)
    # The converter's GGUF tokenizer splits "\nand" otherwise than tokenizer.json does (a
    # tokenizer matter, not a vision one): compare the prompts both tokenize alike.
    same = [p for p in REFERENCE["prompts"]
            if model.tokenizer.encode(p["text"]) == llava.tokenizer.encode(p["text"])]
    assert same
    for prompt in same:
        want = expected_ids(prompt)
        images = [str(image_path(name)) for name in prompt["images"]]
        response = model.generate(prompt["text"], images=images,
                                  max_tokens=len(prompt["generate_ids"]))
        assert response.tokens[: len(want)] == want, prompt["name"]


def test_paths_bytes_and_memoryviews_give_the_same_ids(llava):
    prompt = REFERENCE["prompts"][0]
    want = expected_ids(prompt)
    data = CAMERA.read_bytes()
    for image in (str(CAMERA), CAMERA, data, bytearray(data), memoryview(data)):
        response = llava.generate(prompt["text"], images=[image], max_tokens=len(want))
        assert response.tokens[: len(want)] == want, type(image)


def bmp(pixels):
    """A 24-bit BMP of an (h, w, 3) uint8 RGB array: encoded bytes of exactly those pixels."""
    h, w, _ = pixels.shape
    stride = (w * 3 + 3) & ~3
    rows = b"".join(pixels[y, :, ::-1].tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return header + info + rows


def test_numpy_arrays_equal_the_same_pixels_encoded(llava):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    text = "USER: <image>\nWhat is this? ASSISTANT:"
    from_bytes = llava.generate(text, images=[bmp(pixels)], max_tokens=8)
    from_array = llava.generate(text, images=[pixels], max_tokens=8)
    assert from_array.tokens == from_bytes.tokens
    # A strided view (every other column) is read as the pixels it shows.
    wide = rng.integers(0, 256, size=(37, 106, 3), dtype=np.uint8)
    view = wide[:, ::2]
    assert llava.generate(text, images=[view], max_tokens=8).tokens == llava.generate(
        text, images=[np.ascontiguousarray(view)], max_tokens=8).tokens
    # Another picture gives other ids: the pixels reach the model.
    other = llava.generate(text, images=[255 - pixels], max_tokens=8)
    assert other.tokens != from_array.tokens


def test_stream_with_images_equals_generate(llava):
    prompt = REFERENCE["prompts"][1]
    images = [image_path(name) for name in prompt["images"]]
    text = llava.generate(prompt["text"], images=images, max_tokens=8).text
    assert "".join(llava.stream(prompt["text"], images=images, max_tokens=8)) == text


def test_chat_content_parts_and_images_list_agree(llava):
    question = "What is this?"
    data_url = "data:image/png;base64," + base64.b64encode(CAMERA.read_bytes()).decode()
    forms = [
        dict(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": question}]}]),
        dict(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "file://" + str(CAMERA)}},
            {"type": "text", "text": question}]}]),
        dict(messages=[{"role": "user", "content": [
            {"type": "image", "image": CAMERA}, {"type": "text", "text": question}]}]),
        dict(messages=[{"role": "user", "content": question}], images=[CAMERA.read_bytes()]),
    ]
    replies = [llava.chat(max_tokens=6, **form) for form in forms]
    # The template's prompt is the one_image prompt without BOS: 32 tokens, the image in it.
    assert [r.prompt_tokens for r in replies] == [32] * len(forms)
    assert all(r.tokens == replies[0].tokens for r in replies)
    # The image placed after the text is another prompt.
    after = llava.chat([{"role": "user", "content": [
        {"type": "text", "text": question}, {"type": "image", "image": CAMERA}]}], max_tokens=6)
    assert after.prompt_tokens == 32 and after.tokens != replies[0].tokens


def test_bad_images_raise_errors_naming_them(llava):
    text = "USER: <image>\nWhat is this? ASSISTANT:"
    cases = [
        (dict(images=[3.5]), "images\\[0\\]: expected a path, bytes or a NumPy uint8"),
        (dict(images=[np.zeros((4, 4, 3), np.float32)]), "uint8 RGB of shape .* got float32"),
        (dict(images=[np.zeros((4, 4), np.uint8)]), "got uint8 \\(4, 4\\)"),
        (dict(images=str(CAMERA)), "images: expected a list of images .*got one str"),
        (dict(images=7), "images: expected a list of images .*got one int"),
        (dict(images=[ROOT / "README.md"]), "\\[image\\].*README.md"),
        (dict(images=[b"not an image"]), "images\\[0\\]"),
        (dict(images=[CAMERA, CAMERA]), "more images than placeholders"),
    ]
    for kwargs, message in cases:
        with pytest.raises(alloyforge.Error, match=message):
            llava.generate(text, max_tokens=2, **kwargs)
    with pytest.raises(alloyforge.Error, match="no network") as error:
        llava.chat([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert error.value.code == "unsupported"
    with pytest.raises(alloyforge.Error, match="content\\[0\\]: unknown part \"video\""):
        llava.chat([{"role": "user", "content": [{"type": "video", "video": "a.mp4"}]}])
    with pytest.raises(alloyforge.Error, match="base64"):
        llava.chat([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}])
    with pytest.raises(alloyforge.Error, match="no user message"):
        llava.chat([{"role": "system", "content": "x"}], images=[CAMERA])
    # The model is still usable after every refusal.
    assert llava.generate(text, images=[CAMERA], max_tokens=2).tokens


def test_text_only_models_and_misplaced_mmproj_are_refused():
    with pytest.raises(alloyforge.Error, match="text-only"):
        alloyforge.load(STORIES, threads=1).generate("Once", images=[CAMERA], max_tokens=2)
    with pytest.raises(alloyforge.Error, match="its own vision tower"):
        alloyforge.load(LLAVA, mmproj=LLAVA / "mmproj-model-f32.gguf", threads=1)
