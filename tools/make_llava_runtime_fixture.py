#!/usr/bin/env python3
"""Tiny random LLaVA checkpoints for the runtime side of vision (prompt assembly, input
embeddings, caches), made with transformers itself. The image encoder is not exercised here:
the tests stand in a fake encoder that returns the image features transformers computed
(get_image_features after the projector), so the decoder side is checked on its own.

Writes tests/fixtures/models/<name>/ for
    llava_rt         LlavaForConditionalGeneration, Llama text config (transformers 5 names:
                     model.language_model.*, lm_head.*), tokenizer of stories260K-hf plus the
                     added special token "<image>" (id 512) and a LLaVA-style chat template
    llava_rt_legacy  the same text weights under the older names (language_model.model.*,
                     language_model.lm_head.*), Qwen2-style text config (q/k/v biases)

Files: config.json, model.safetensors, tokenizer files and text.gguf (llava_rt, llama.cpp's
convert_hf_to_gguf.py from $LLAMA_CPP, default /work/peers/llama.cpp), features_<k>.bin (float32
[image_seq_length, hidden] for image k, made from pixel_values drawn with seed k),
logits.bin (float32 [len(expanded_ids), vocab] of one forward over expanded_ids with images 0
and 1), llava_reference.json {ids, expanded_ids, image_token_index, greedy: {prompt_ids,
images, ids}, chat} (not reference.json, which the text-model fixture test globs).

Usage (from the repository root): /work/pyref/bin/python tools/make_llava_runtime_fixture.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, Qwen2Config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.environ.get("AF_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")

IMAGE_TOKEN = 512
VOCAB = 513
SEQ = 4  # (30 // 14) ** 2 patches, class token dropped ("default" strategy)

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def text_config(kind):
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5)
    return LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)


def make(kind):
    torch.manual_seed(0 if kind == "llama" else 1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                              num_attention_heads=2, image_size=30, patch_size=14,
                              projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text_config(kind),
                         image_token_index=IMAGE_TOKEN, image_seq_length=SEQ,
                         vision_feature_layer=-2)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger weights than the init's, so logits differ
            p.normal_(0, 0.2)
    return model


def pixels(k):
    g = torch.Generator().manual_seed(100 + k)
    return torch.rand((1, 3, 30, 30), generator=g) * 2 - 1


def features(model, k):
    with torch.no_grad():
        out = model.model.get_image_features(pixel_values=pixels(k))
    if hasattr(out, "pooler_output"):
        out = out.pooler_output
    if isinstance(out, (list, tuple)):
        out = torch.cat(list(out), 0)
    return out.reshape(-1, model.config.text_config.hidden_size).float()


def expand(ids):
    out = []
    for i in ids:
        out += [IMAGE_TOKEN] * SEQ if i == IMAGE_TOKEN else [i]
    return out


def write(model, name, legacy):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.config.save_pretrained(d)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if legacy:  # the names of checkpoints saved before transformers 4.52
        renamed = {}
        for k, v in state.items():
            k = k.replace("model.language_model.", "language_model.model.")
            k = k.replace("model.vision_tower.", "vision_tower.")
            k = k.replace("model.multi_modal_projector.", "multi_modal_projector.")
            k = "language_model.lm_head.weight" if k == "lm_head.weight" else k
            renamed[k] = v
        state = renamed
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    for k in range(3):
        features(model, k).numpy().astype("<f4").tofile(os.path.join(d, f"features_{k}.bin"))
    ids = [1, IMAGE_TOKEN, 45, 67, 89, IMAGE_TOKEN, 100, 7]
    expanded = expand(ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([expanded]),
                       pixel_values=torch.cat([pixels(0), pixels(1)])).logits[0]
    logits.float().numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))
    greedy_prompt = expand([1, IMAGE_TOKEN, 300, 301, IMAGE_TOKEN, 302])
    with torch.no_grad():
        gen = model.generate(input_ids=torch.tensor([greedy_prompt]),
                             pixel_values=torch.cat([pixels(2), pixels(0)]), max_new_tokens=10,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
    ref = {"ids": ids, "expanded_ids": expanded, "image_token_index": IMAGE_TOKEN,
           "image_seq_length": SEQ, "logits_images": [0, 1],
           "greedy": {"prompt_ids": greedy_prompt, "images": [2, 0],
                      "ids": gen[0, len(greedy_prompt):].tolist()}}
    if not legacy:
        tok = AutoTokenizer.from_pretrained(os.path.join(TESTDATA, "models", "stories260K-hf"))
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        assert tok.convert_tokens_to_ids("<image>") == IMAGE_TOKEN
        tok.chat_template = CHAT_TEMPLATE
        tok.save_pretrained(d)
        for extra in ("tokenizer.model",):  # the tokenizer.json carries everything
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                                      "text": "Once upon"}]}]
        ref["chat"] = {"messages": messages,
                       "text": tok.apply_chat_template(messages, tokenize=False,
                                                       add_generation_prompt=True)}
        ref["chat"]["ids"] = tok(ref["chat"]["text"], add_special_tokens=False)["input_ids"]
        write_chat_cases(d)
    with open(os.path.join(d, "llava_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(name, "->", d, file=sys.stderr)


# Content parts in the order a user gives them: transformers passes them to the template as is.
CHAT_CASES = [
    [{"role": "user", "content": [{"type": "text", "text": "Look at this:"}, {"type": "image"},
                                  {"type": "text", "text": " and this:"}, {"type": "image"},
                                  {"type": "text", "text": " which is bigger?"}]}],
    [{"role": "user", "content": [{"type": "text", "text": "Once upon"}, {"type": "image"}]}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                  {"type": "text", "text": "Once upon"}]},
     {"role": "assistant", "content": "a time"},
     {"role": "user", "content": [{"type": "text", "text": "And"}, {"type": "image"},
                                  {"type": "text", "text": "then?"}]}],
]


def write_chat_cases(d):
    """chat_cases.json: transformers' rendering of CHAT_CASES with the folder's tokenizer and
    chat template (tests/e2e/test_llava_runtime.cpp renders them with Session::render_chat)."""
    tok = AutoTokenizer.from_pretrained(d)
    cases = [{"messages": m, "text": tok.apply_chat_template(m, tokenize=False,
                                                              add_generation_prompt=True)}
             for m in CHAT_CASES]
    with open(os.path.join(d, "chat_cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


def convert_text_gguf(name):
    """text.gguf: the text model as llama.cpp's converter writes it for LLaVA checkpoints
    (its tokenizer keeps "<image>"), for the text GGUF + mmproj path."""
    import subprocess
    peers = os.environ.get("LLAMA_CPP", "/work/peers/llama.cpp")
    env = dict(os.environ, PYTHONPATH=os.path.join(peers, "gguf-py"))
    subprocess.run([sys.executable, os.path.join(peers, "convert_hf_to_gguf.py"),
                    os.path.join(OUT, name), "--outfile", os.path.join(OUT, name, "text.gguf"),
                    "--outtype", "f32"], check=True, env=env)


def main():
    if sys.argv[1:] == ["--chat-cases-only"]:  # the other files stay as they are
        write_chat_cases(os.path.join(OUT, "llava_rt"))
        return
    write(make("llama"), "llava_rt", legacy=False)
    convert_text_gguf("llava_rt")
    write(make("qwen2"), "llava_rt_legacy", legacy=True)


if __name__ == "__main__":
    main()
