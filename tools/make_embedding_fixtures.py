#!/usr/bin/env python3
"""Fixtures for AlloyForge's sentence-embedding models (src/models/bert.cpp, embedding API).

1. tests/fixtures/models/bert_tiny/: a tiny random BertModel made by transformers itself
   (seed 2001), saved as a sentence-transformers folder: config.json, model.safetensors,
   tokenizer.json (tests/fixtures/tokenizer/models/wordpiece.json), modules.json,
   1_Pooling/config.json (mean pooling), sentence_bert_config.json; plus reference.json:
     {"sentences": [...], "ids": [[...]...],            # tokenizer ids ([CLS] .. [SEP])
      "hidden": [[[...]...]...],                        # last_hidden_state per sentence (unpadded)
      "embeddings": [[...]...]}                         # SentenceTransformer(folder).encode
   The hidden states come from one padded batch with an attention mask, as
   sentence-transformers runs it.

2. tests/fixtures/embeddings/qwen2_hidden.json: transformers' last_hidden_state (after the final
   norm: what lm_head reads) of the tiny qwen2 fixture (tests/fixtures/models/qwen2) for two id
   sequences, for decoder-model embeddings.

3. tests/fixtures/embeddings/all_minilm_l6_v2.json: sentence-transformers' vectors of the real
   all-MiniLM-L6-v2 ($AF_MODELS/all-minilm-l6-v2) for SENTENCES (skipped when AF_MODELS is unset).

Usage (repository root): /work/pyref/bin/python tools/make_embedding_fixtures.py
Needs torch, transformers >= 5 and sentence-transformers (generated with 6.0.1).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "models" / "bert_tiny"
MINILM_JSON = REPO / "tests" / "fixtures" / "embeddings" / "all_minilm_l6_v2.json"
WORDPIECE = REPO / "tests" / "fixtures" / "tokenizer" / "models" / "wordpiece.json"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Hello!",
    "Embeddings map sentences to vectors; similar meanings land close together.",
    "Das ist ein deutscher Satz mit Umlauten: über, schön, Größe.",
    "C'est la vie, et la vie est belle.",
    "北京是中国的首都。",
    "1234 5678 90 -- numbers, punctuation?! and ÉMPHASIS",
    "short",
    "The weather today is sunny with a light breeze coming from the west, perfect for a long "
    "walk along the river before the evening rain arrives.",
]


def rounded(values, digits=7):
    return [round(float(v), digits) for v in values]


def write_sentence_transformers_files(folder: Path, max_seq_length: int, dim: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "2_Normalize" / ".keep").write_text("")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2) + "\n")


def make_tiny() -> None:
    torch.manual_seed(2001)
    if TINY.exists():
        shutil.rmtree(TINY)
    TINY.mkdir(parents=True)
    shutil.copy(WORDPIECE, TINY / "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TINY / "tokenizer.json"), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                  mask_token="[MASK]")
    tok.save_pretrained(TINY)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                        type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False).eval()
    # Non-trivial LayerNorm parameters and token-type rows (random init leaves them 1 / 0).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(TINY, safe_serialization=True)
    write_sentence_transformers_files(TINY, 128, config.hidden_size)

    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    ids, states = [], []
    for i in range(len(SENTENCES)):
        n = int(batch["attention_mask"][i].sum())
        ids.append(batch["input_ids"][i, :n].tolist())
        states.append([rounded(row) for row in hidden[i, :n].tolist()])

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(TINY), device="cpu")
    emb = st.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    ref = {"sentences": SENTENCES, "ids": ids, "hidden": states,
           "embeddings": [rounded(v) for v in emb]}
    (TINY / "reference.json").write_text(json.dumps(ref) + "\n")


def make_decoder_hidden() -> None:
    from transformers import AutoModelForCausalLM
    folder = REPO / "tests" / "fixtures" / "models" / "qwen2"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    seqs = [[5, 17, 42, 99, 3, 250, 7], [11, 12, 13]]
    hidden = []
    with torch.no_grad():
        for ids in seqs:
            out = model.model(torch.tensor([ids])).last_hidden_state[0]
            hidden.append([rounded(row) for row in out.tolist()])
    out_file = REPO / "tests" / "fixtures" / "embeddings" / "qwen2_hidden.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps({"ids": seqs, "hidden": hidden}) + "\n")


def make_minilm() -> None:
    models = os.environ.get("AF_MODELS")
    folder = Path(models or "") / "all-minilm-l6-v2"
    if not models or not folder.exists():
        print("AF_MODELS/all-minilm-l6-v2 not found: skipping the MiniLM reference")
        return
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(folder), device="cpu")
    emb = st.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    ids = [st.tokenizer(s)["input_ids"] for s in SENTENCES]
    MINILM_JSON.parent.mkdir(parents=True, exist_ok=True)
    MINILM_JSON.write_text(json.dumps({"model": "sentence-transformers/all-MiniLM-L6-v2",
                                       "sentences": SENTENCES, "ids": ids,
                                       "embeddings": [rounded(v) for v in emb]}) + "\n")


def main() -> None:
    torch.set_num_threads(1)
    make_tiny()
    make_decoder_hidden()
    make_minilm()


if __name__ == "__main__":
    main()
