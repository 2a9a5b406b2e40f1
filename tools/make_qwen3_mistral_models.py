#!/usr/bin/env python3
"""Tiny random Qwen3 and sliding-window Mistral models + reference logits for AlloyForge.

Written to ``tests/fixtures/qwen3_mistral/<name>/`` (fixed seeds, deterministic):

    config.json, model.safetensors   save_pretrained (HF names)
    <name>.gguf                      llama.cpp's convert_hf_to_gguf.py --outtype f32 on the folder
                                     plus the stories260K tokenizer (512 tokens, as the vocabulary
                                     here); for mistral_swa the file then gets
                                     llama.attention.sliding_window (llama.cpp's converter drops
                                     the window for the llama architecture, and llama.cpp ignores
                                     it there, so its logits on the file are full attention)
    <name>.<q>.gguf                  llama-quantize's q (qwen3_tied: f16, qwen3_untied: q8_0)
    logits_transformers_f32.bin      float32 [len(ids), vocab]: ALL positions of one forward
                                     pass over "ids" (no BOS), eager attention
    logits_llamacpp.bin              llama.cpp on <name>.gguf (tools/llamacpp_dump_logits.cpp:
                                     F32 KV cache, n_ctx 256, 2 threads)
    logits_llamacpp_<q>.bin          the same on <name>.<q>.gguf
    reference.json                   ids, generate (greedy ids of generate(do_sample=False)), ...

Also qwen3_chat_template.jinja (Qwen3-0.6B's chat template, as llama.cpp keeps a copy under
models/templates/) and qwen3_template_renderings.json: transformers' renderings of it for several
chats (thinking on and off, a reasoning assistant turn, tools and a tool call) with the context
the template saw.

Models:
    qwen3_tied     Qwen3ForCausalLM, tied embeddings, head_dim 16 != hidden / heads = 8, GQA 4/2
    qwen3_untied   the same untied, head_dim 24, GQA 6/2
    mistral_swa    MistralForCausalLM with sliding_window 8 and 40 ids (five windows)

Usage (repository root):
    g++ -O1 -std=c++17 tools/llamacpp_dump_logits.cpp ... -o /work/peers/qwen3/dump_logits
    /work/pyref/bin/python tools/make_qwen3_mistral_models.py \
        --llamacpp-dump /work/peers/qwen3/dump_logits
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from transformers import MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "qwen3_mistral"
STORIES_HF = Path("/work/shared/testdata/models/stories260K-hf")
LLAMA_CPP = Path("/work/peers/llama.cpp")
QUANTIZE = LLAMA_CPP / "build" / "bin" / "llama-quantize"
VOCAB = 512
HIDDEN = 32
IDS_SEED = 20251207

SPECS = [
    dict(name="qwen3_tied", arch="Qwen3ForCausalLM", seed=1931, heads=4, kv_heads=2, head_dim=16,
         ffn=64, tied=True, n_ids=32, gen_prompt=20, quant="f16"),
    dict(name="qwen3_untied", arch="Qwen3ForCausalLM", seed=1932, heads=6, kv_heads=2,
         head_dim=24, ffn=48, tied=False, n_ids=32, gen_prompt=20, quant="q8_0"),
    dict(name="mistral_swa", arch="MistralForCausalLM", seed=1933, heads=4, kv_heads=2,
         head_dim=8, ffn=64, tied=False, n_ids=40, gen_prompt=26, quant=None, window=8),
]
GEN_NEW = 12


def make_model(spec):
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=spec["ffn"],
                  num_hidden_layers=2, num_attention_heads=spec["heads"],
                  num_key_value_heads=spec["kv_heads"], head_dim=spec["head_dim"],
                  max_position_embeddings=128, rms_norm_eps=1e-6,
                  tie_word_embeddings=spec["tied"], bos_token_id=1, eos_token_id=2,
                  pad_token_id=0, attn_implementation="eager")
    if spec["arch"] == "Qwen3ForCausalLM":
        config = Qwen3Config(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                             use_sliding_window=False, **common)
        cls = Qwen3ForCausalLM
    else:
        config = MistralConfig(rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                               sliding_window=spec["window"], **common)
        cls = MistralForCausalLM
    torch.manual_seed(spec["seed"])
    model = cls(config)
    g = torch.Generator().manual_seed(spec["seed"] * 7 + 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    return model.eval(), cls


def convert(folder: Path, out: Path):
    """llama.cpp's converter on the folder with the stories260K tokenizer beside it."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(folder / f, t / f)
        for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(STORIES_HF / f, t / f)
        subprocess.run([sys.executable, str(LLAMA_CPP / "convert_hf_to_gguf.py"), str(t),
                        "--outtype", "f32", "--outfile", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={"PYTHONPATH": str(LLAMA_CPP / "gguf-py"), "PATH": "/usr/bin:/bin"})


def add_int_key(path: Path, key: str, value: int):
    """Rewrites the GGUF at path with one more uint32 metadata key (tensors unchanged)."""
    r = gguf.GGUFReader(str(path))
    arch = r.fields["general.architecture"].contents()
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), f.types[0], sub_type=f.types[1])
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    w.add_uint32(key, value)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed(t.shape.tolist())),
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)


def llamacpp_logits(dump, gguf_path: Path, out: Path, ids):
    subprocess.run([dump, str(gguf_path), str(out)] + [str(i) for i in ids], check=True,
                   stderr=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4").reshape(len(ids), VOCAB)


def make_one(spec, dump):
    d = OUT / spec["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model, cls = make_model(spec)
    model.save_pretrained(d, safe_serialization=True)
    model = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(IDS_SEED + spec["seed"])
    ids = torch.randint(3, VOCAB, (spec["n_ids"],), generator=g).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        prompt = ids[:spec["gen_prompt"]]
        out = model.generate(torch.tensor([prompt]), max_new_tokens=GEN_NEW, do_sample=False,
                             min_new_tokens=GEN_NEW, pad_token_id=0)
    new = out[0, len(prompt):].tolist()
    assert logits.shape == (len(ids), VOCAB) and np.isfinite(logits).all()
    logits.astype("<f4").tofile(d / "logits_transformers_f32.bin")
    gguf_path = d / f"{spec['name']}.gguf"
    convert(d, gguf_path)
    ref = {"name": spec["name"], "architecture": spec["arch"], "gguf": gguf_path.name,
           "ids": "@IDS@", "vocab_size": VOCAB,
           "logits": {"transformers_f32": {"file": "logits_transformers_f32.bin",
                                           "note": "float32 eager, one pass over all ids"}},
           "generate": {"prompt_length": spec["gen_prompt"], "new_ids": new,
                        "note": "generate(do_sample=False) over ids[:prompt_length]"},
           "generator": {"script": "tools/make_qwen3_mistral_models.py",
                         "torch": torch.__version__.split("+")[0],
                         "transformers": transformers.__version__}}
    if "window" in spec:
        add_int_key(gguf_path, "llama.attention.sliding_window", spec["window"])
        ref["sliding_window"] = spec["window"]
        with torch.no_grad():
            model.config.sliding_window = None
            full = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        ref["full_attention_max_abs_diff"] = float(np.abs(full - logits).max())
    if dump:
        lc = llamacpp_logits(dump, gguf_path, d / "logits_llamacpp.bin", ids)
        ref["logits"]["llamacpp"] = {
            "file": "logits_llamacpp.bin",
            "max_abs_diff_vs_transformers_f32": float(np.abs(lc - logits).max()),
            "note": "tools/llamacpp_dump_logits.cpp on the GGUF: n_ctx 256, 2 threads, F32 KV"}
        if spec["quant"]:
            q = d / f"{spec['name']}.{spec['quant']}.gguf"
            subprocess.run([str(QUANTIZE), str(gguf_path), str(q), spec["quant"]], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lq = llamacpp_logits(dump, q, d / f"logits_llamacpp_{spec['quant']}.bin", ids)
            ref["logits"]["llamacpp_" + spec["quant"]] = {
                "file": f"logits_llamacpp_{spec['quant']}.bin", "gguf": q.name,
                "max_abs_diff_vs_transformers_f32": float(np.abs(lq - logits).max())}
        print(f"{spec['name']}: llama.cpp vs transformers {np.abs(lc - logits).max():.3e}")
    text = json.dumps(ref, indent=2).replace('"@IDS@"', json.dumps(ids))
    (d / "reference.json").write_text(text + "\n")
    print(f"{spec['name']}: logits std {logits.std():.3f}, generate {new}")


QWEN3_TEMPLATE = LLAMA_CPP / "models" / "templates" / "Qwen-Qwen3-0.6B.jinja"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def template_cases():
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi, ünïcödé ☃"},
            {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello!"},
            {"role": "user", "content": "What is 2+2?"}]
    reasoning = [{"role": "user", "content": "Why?"},
                 {"role": "assistant", "content": "Because.",
                  "reasoning_content": "Think first."},
                 {"role": "user", "content": "Sure?"}]
    tools = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"type": "function", "function": {
                  "name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "{\"temp\": 21}"}]
    for name, messages, tool_list in (("chat", chat, None), ("reasoning", reasoning, None),
                                      ("tools", tools, [WEATHER_TOOL])):
        for thinking in (None, True, False):
            for gen in (True, False):
                kwargs = {} if thinking is None else {"enable_thinking": thinking}
                yield name, messages, tool_list, gen, kwargs


def record_templates():
    from transformers.utils.chat_template_utils import render_jinja_template
    source = QWEN3_TEMPLATE.read_text()
    (OUT / "qwen3_chat_template.jinja").write_text(source)
    cases = []
    for name, messages, tools, gen, kwargs in template_cases():
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools,
                                            chat_template=source, add_generation_prompt=gen,
                                            **kwargs)
        context = {"messages": messages, "tools": tools, "add_generation_prompt": gen, **kwargs}
        cases.append({"name": f"{name} gen={gen} kwargs={json.dumps(kwargs)}",
                      "context": context, "expected": rendered[0]})
    doc = {"generator": "tools/make_qwen3_mistral_models.py",
           "transformers": transformers.__version__, "template": "qwen3_chat_template.jinja",
           "cases": cases}
    (OUT / "qwen3_template_renderings.json").write_text(
        json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"templates: {len(cases)} renderings")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llamacpp-dump", help="built tools/llamacpp_dump_logits.cpp")
    ap.add_argument("--templates-only", action="store_true", help="only the template renderings")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    record_templates()
    if args.templates_only:
        return
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    for spec in SPECS:
        make_one(spec, args.llamacpp_dump)


if __name__ == "__main__":
    main()
