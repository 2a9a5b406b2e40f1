#!/usr/bin/env python3
"""Records what transformers' logits processors keep, and with which probabilities, for random
logits and histories, so that the C++ sampling chain is compared against them without Python.

The processor list is the one generate() builds: GenerationMixin._get_logits_processor of a tiny
randomly initialised Llama, for a GenerationConfig(do_sample=True, ...) holding each case's
parameters; the script checks it holds only the expected processors and applies them in its order.
The repetition penalty runs in float32 (the dtype of the logits the C++ side gets). Presence and
frequency penalties, which transformers lacks, follow OpenAI's documented formula
    logit[j] -= presence_penalty * (count[j] > 0) + frequency_penalty * count[j]
in numpy float32, right after the repetition penalty (vLLM's order). The warpers (temperature,
top-k, top-p, min-p, typical-p) run in float64 as the reference and once more in float32; a case
whose kept set differs between the two sits on a rounding boundary and is drawn again, as is a
case where top-p cut a group of tied tokens in two (transformers leaves that to its sort order).

Writes tests/fixtures/sampling/transformers.json:
{"source": ..., "cases": [{"name", "params": {...}, "logits": [...], "history": [...],
  "kept": [ids ascending], "probs": [probability of each kept id]}]}

Usage: /work/venv/bin/python tools/sampling_make_fixtures.py [--out DIR] [--seed N]
"""
import argparse
import os

import numpy as np
import torch
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
    TopPLogitsWarper, TypicalLogitsWarper)

WARPERS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper,
           TypicalLogitsWarper)

DEFAULTS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                penalty_last_n=0)

# (name, parameters different from DEFAULTS); every name is recorded for several random inputs.
CONFIGS = [
    ("repetition", dict(repetition_penalty=1.3)),
    ("repetition_below_one", dict(repetition_penalty=0.8)),
    ("repetition_last_n", dict(repetition_penalty=1.5, penalty_last_n=7)),
    ("presence_frequency", dict(presence_penalty=0.6, frequency_penalty=0.3)),
    ("presence_frequency_negative", dict(presence_penalty=-0.5, frequency_penalty=-0.25,
                                         penalty_last_n=10)),
    ("temperature", dict(temperature=0.7)),
    ("temperature_hot", dict(temperature=1.8)),
    ("top_k", dict(top_k=5)),
    ("top_k_tie_at_k", dict(top_k=8, tie_at_k=True)),
    ("top_k_above_vocab", dict(top_k=5000)),
    ("top_p", dict(top_p=0.9)),
    ("top_p_small", dict(top_p=0.3, temperature=0.5)),
    ("min_p", dict(min_p=0.1)),
    ("min_p_hot", dict(min_p=0.05, temperature=1.5)),
    ("typical", dict(typical_p=0.9)),
    ("typical_small", dict(typical_p=0.3)),
    ("top_k_top_p", dict(temperature=0.8, top_k=40, top_p=0.95)),
    ("all_warpers", dict(temperature=0.9, top_k=50, top_p=0.9, min_p=0.02, typical_p=0.95)),
    ("penalties_and_warpers", dict(repetition_penalty=1.2, presence_penalty=0.4,
                                   frequency_penalty=0.2, penalty_last_n=20, temperature=0.6,
                                   top_k=30, top_p=0.8, min_p=0.05)),
    ("llama_cpp_defaults", dict(repetition_penalty=1.1, penalty_last_n=64, temperature=0.8,
                                top_k=40, top_p=0.95, min_p=0.05)),
]
INPUTS_PER_CONFIG = 2


def tiny_model(vocab):
    config = LlamaConfig(vocab_size=vocab, hidden_size=8, intermediate_size=16,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    return LlamaForCausalLM(config)


def generate_processors(model, params, prompt_length):
    gen = GenerationConfig(
        do_sample=True, temperature=params["temperature"],
        top_k=params["top_k"] or None, top_p=params["top_p"],
        min_p=params["min_p"] or None, typical_p=params["typical_p"],
        repetition_penalty=params["repetition_penalty"])
    processors = model._get_logits_processor(generation_config=gen,
                                             input_ids_seq_length=prompt_length)
    for p in processors:
        assert isinstance(p, (RepetitionPenaltyLogitsProcessor,) + WARPERS), type(p)
    return processors


def random_input(rng, vocab, params):
    logits = (rng.standard_normal(vocab) * rng.uniform(1.0, 4.0)).astype(np.float32)
    logits = np.round(logits, 3).astype(np.float32)  # short text; rounding also makes ties
    # Extra ties: copy a few values elsewhere, some of them among the most likely tokens.
    for _ in range(vocab // 20):
        logits[rng.integers(vocab)] = logits[rng.integers(vocab)]
    order = np.argsort(-logits, kind="stable")
    logits[order[rng.integers(1, 4)]] = logits[order[0]] - np.float32(0.25)
    if params.get("tie_at_k"):
        k = params["top_k"]
        logits[order[k + 2]] = logits[order[k - 1]]
    n_history = int(rng.integers(0, 60))
    # Histories repeat ids (so counts exceed one) and favour likely tokens (so penalties matter).
    pool = np.concatenate([order[:15], rng.integers(0, vocab, 15)])
    history = rng.choice(pool, n_history).astype(np.int64)
    return logits, history


def presence_frequency(logits, window, presence, frequency):
    counts = np.bincount(window, minlength=logits.shape[0]).astype(np.float32)
    penalty = np.float32(presence) * (counts > 0) + np.float32(frequency) * counts
    return (logits - penalty.astype(np.float32)).astype(np.float32)


def run_chain(processors, logits, window, params, warp_dtype):
    ids = torch.tensor(window, dtype=torch.long).unsqueeze(0)
    scores = torch.tensor(logits, dtype=torch.float32).unsqueeze(0)
    penalised = False
    for p in processors:
        if isinstance(p, WARPERS) and not penalised:
            scores = apply_openai_penalties(scores, window, params).to(warp_dtype)
            penalised = True
        scores = p(ids, scores)
    if not penalised:
        scores = apply_openai_penalties(scores, window, params).to(warp_dtype)
    scores = scores.to(warp_dtype)[0]
    probs = torch.softmax(scores, dim=-1).numpy()
    kept = np.nonzero(np.isfinite(scores.numpy()))[0]
    return kept, probs[kept]


def apply_openai_penalties(scores, window, params):
    if params["presence_penalty"] == 0 and params["frequency_penalty"] == 0:
        return scores
    out = presence_frequency(scores[0].to(torch.float32).numpy(), window,
                             params["presence_penalty"], params["frequency_penalty"])
    return torch.from_numpy(out).unsqueeze(0)


def splits_a_tie(logits_after_penalties, kept):
    kept_set = set(kept.tolist())
    values = {}
    for i, v in enumerate(logits_after_penalties):
        values.setdefault(float(v), []).append(i)
    for group in values.values():
        inside = sum(1 for i in group if i in kept_set)
        if 0 < inside < len(group):
            return True
    return False


def fmt_floats(values):
    return "[" + ",".join(str(np.float32(v)) for v in values) + "]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "sampling"))
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    models = {}
    cases, redrawn = [], 0
    for name, overrides in CONFIGS:
        params = dict(DEFAULTS)
        params.update({k: v for k, v in overrides.items() if k in DEFAULTS})
        made = 0
        while made < INPUTS_PER_CONFIG:
            vocab = int(rng.choice([50, 97, 256, 613, 1000]))
            if vocab not in models:
                models[vocab] = tiny_model(vocab)
            logits, history = random_input(rng, vocab, overrides)
            n = params["penalty_last_n"]
            window = history[-n:] if n > 0 and len(history) > n else history
            processors = generate_processors(models[vocab], params, max(1, len(history)))
            kept, probs = run_chain(processors, logits, window, params, torch.float64)
            kept32, _ = run_chain(processors, logits, window, params, torch.float32)
            boundary = not np.array_equal(kept, kept32)
            tie_cut = splits_a_tie(logits_of(processors, logits, window, params), kept)
            if boundary or tie_cut:
                redrawn += 1
                continue
            made += 1
            cases.append((f"{name}_{made}", params, logits, history, kept, probs,
                          [type(p).__name__ for p in processors]))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "transformers.json")
    with open(path, "w") as f:
        f.write('{"source": "tools/sampling_make_fixtures.py, transformers %s, torch %s, seed %d",\n'
                % (transformers.__version__, torch.__version__, args.seed))
        f.write(' "cases": [\n')
        for i, (name, params, logits, history, kept, probs, chain) in enumerate(cases):
            p = ", ".join(f'"{k}": {v}' for k, v in params.items())
            f.write('  {"name": "%s", "processors": [%s],\n   "params": {%s},\n'
                    % (name, ", ".join(f'"{c}"' for c in chain), p))
            f.write('   "history": [%s],\n' % ",".join(str(int(h)) for h in history))
            f.write('   "logits": %s,\n' % fmt_floats(logits))
            f.write('   "kept": [%s],\n' % ",".join(str(int(k)) for k in kept))
            f.write('   "probs": [%s]}%s\n' % (",".join(repr(float(p)) for p in probs),
                                              "," if i + 1 < len(cases) else ""))
        f.write(" ]}\n")
    print(f"wrote {len(cases)} cases to {path} ({redrawn} inputs redrawn at a rounding boundary "
          "or a top-p cut through tied tokens)")


def logits_of(processors, logits, window, params):
    """The logits after the penalties, where ties are decided."""
    ids = torch.tensor(window, dtype=torch.long).unsqueeze(0)
    scores = torch.tensor(logits, dtype=torch.float32).unsqueeze(0)
    for p in processors:
        if isinstance(p, RepetitionPenaltyLogitsProcessor):
            scores = p(ids, scores)
    return apply_openai_penalties(scores, window, params)[0].numpy()


if __name__ == "__main__":
    main()
