#!/usr/bin/env python3
"""Records Hugging Face tokenizers' ids and decodings for many varied strings as fixtures, so
that the C++ tests compare against HF without needing Python.

Writes tests/fixtures/tokenizer/strings.json (the inputs) and <name>.json per tokenizer:
{"source": ..., "ids": [[...], ...], "decoded": [... or null]} where ids come from
encode(text, add_special_tokens=False) (added/special tokens in the text are split out, as HF
always does) and decoded from the tokenizers library's decode(ids, skip_special_tokens=True),
null where that equals the input.

Usage: /work/venv/bin/python tools/tokenizer_make_fixtures.py [--testdata DIR] [--count N]
"""
import argparse
import json
import os
import random

WORDS = {
    "en": "the quick brown fox jumps over lazy dog hello world it's don't we'll I'M YOU'RE "
          "tokenizer model inference running Once upon a time there was".split(),
    "de": "Grüße Straße Mädchen über schön Äpfel Übermut".split(),
    "fr": "élève français garçon déjà où naïve cœur".split(),
    "ru": "Привет мир как дела съешь ещё этих мягких".split(),
    "el": "Καλημέρα κόσμε ελληνικά γλώσσα".split(),
    "zh": "你好 世界 中文 分词 测试 模型 我们 今天".split(),
    "ja": "こんにちは 世界 カタカナ ひらがな 日本語 東京".split(),
    "ko": "안녕하세요 세계 한국어 토큰".split(),
    "ar": "مرحبا بالعالم العربية".split(),
    "hi": "नमस्ते दुनिया हिन्दी".split(),
    "th": "สวัสดี ชาวโลก ภาษาไทย".split(),
}
EMOJI = ["😀", "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇩🇪", "✨", "🤖", "∑", "→", "€", "½"]
CODE = ["def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
        "<div class=\"x\">&amp;</div>", "SELECT * FROM t WHERE id = 42;", "x = [1, 2, 3]\t# list",
        "if (a && b || !c) {\r\n  return;\r\n}", "https://example.com/a?b=c&d=e#f", "$HOME/.cache",
        "std::vector<int32_t> ids;", "print(f\"{name!r:>10}\")", "λx. x + 1", "a_b-c.d/e\\f"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\t\t ", "\u2009"]
SPECIAL = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|user|>",
           "<|assistant|>", "<|end|>", "<|system|>", "<|placeholder1|>"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u1100\u1161", "A\u030a", "c\u0327"]


def piece(rng):
    kind = rng.random()
    if kind < 0.45:
        lang = rng.choice(list(WORDS))
        return rng.choice(WORDS[lang])
    if kind < 0.55:
        return rng.choice(EMOJI)
    if kind < 0.63:
        return rng.choice(CODE)
    if kind < 0.75:
        return str(rng.randint(0, 10 ** rng.randint(1, 18)))
    if kind < 0.85:
        return rng.choice(SPECIAL)
    if kind < 0.92:
        return rng.choice(COMBINING)
    return "".join(chr(rng.choice([rng.randint(0x21, 0x7e), rng.randint(0xa1, 0x24f),
                                   rng.randint(0x370, 0x3ff), rng.randint(0x2000, 0x2bff)]))
                   for _ in range(rng.randint(1, 4)))


def make_strings(count, seed=1234):
    rng = random.Random(seed)
    out = ["", " ", "  ", "\n", "a", "'s", "'S", " 's", "1234567890123", "   leading", "trailing   "]
    while len(out) < count:
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(piece(rng))
            parts.append(rng.choice(SPACES) if rng.random() < 0.35 else " ")
        if rng.random() < 0.5:
            parts.pop()
        out.append("".join(parts))
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(root, "..", "shared", "testdata"))
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    from transformers import AutoTokenizer  # only the generator needs it

    out_dir = os.path.join(root, "tests", "fixtures", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    strings = make_strings(args.count)
    with open(os.path.join(out_dir, "strings.json"), "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=False, indent=0)

    sources = {
        "stories260k": "models/stories260K-hf/tokenizer.json",
        "phi3": "tokenizer/hf/phi-3-mini/tokenizer.json",
        "gpt2": "tokenizer/hf/gpt2",
        "qwen25": "tokenizer/hf/qwen2.5",
    }
    for name, rel in sources.items():
        path = os.path.join(args.testdata, rel)
        if name == "gpt2":
            # The folder has no tokenizer_config.json naming a class; build what transformers'
            # GPT2 converter builds: byte-level BPE, <|endoftext|> as the special token.
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers
            from transformers import PreTrainedTokenizerFast
            backend = Tokenizer(models.BPE.from_file(os.path.join(path, "vocab.json"),
                                                     os.path.join(path, "merges.txt")))
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            backend.decoder = decoders.ByteLevel()
            backend.add_special_tokens(["<|endoftext|>"])
            tok = PreTrainedTokenizerFast(tokenizer_object=backend)
        elif rel.endswith("tokenizer.json") or os.path.exists(os.path.join(path, "tokenizer.json")):
            # The tokenizer.json as written, through the tokenizers library. transformers 5's
            # LlamaTokenizer instead rebuilds Llama-family tokenizers with
            # Metaspace(prepend_scheme="first") (its legacy=False behaviour), which differs on
            # leading spaces and after special tokens from the file, older transformers and
            # llama.cpp; the .gguf.out vectors follow the file, so these fixtures do too.
            from tokenizers import Tokenizer
            from transformers import PreTrainedTokenizerFast
            file = path if rel.endswith(".json") else os.path.join(path, "tokenizer.json")
            tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(file))
        else:
            tok = AutoTokenizer.from_pretrained(path)
        backend = tok.backend_tokenizer  # the tokenizers library object
        ids = [backend.encode(s, add_special_tokens=False).ids for s in strings]
        # null where decoding gives back the input, to keep the fixtures small
        decoded = [None if d == s else d for d, s in
                   ((backend.decode(i, skip_special_tokens=True), s) for i, s in zip(ids, strings))]
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump({"source": rel, "tokenizer_class": type(tok).__name__, "ids": ids,
                       "decoded": decoded}, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {len(strings)} strings, {sum(map(len, ids))} ids ({type(tok).__name__})")


if __name__ == "__main__":
    main()
