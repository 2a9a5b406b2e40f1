#!/usr/bin/env python3
"""Fixtures for the WordPiece and Unigram models and for the pre-tokenizers, recorded with the
Hugging Face tokenizers library so that the C++ tests need no Python.

1. Trains three tiny tokenizers on deterministic generated text (the same generator as
   tokenizer_make_fixtures.py, another seed) and writes each tokenizer.json to
   tests/fixtures/tokenizer/models/<name>.json:
   - wordpiece: BertNormalizer (clean text, CJK spacing, lower case, strip accents),
     BertPreTokenizer, WordPiece (##), WordPiece decoder, [CLS] $A [SEP] post-processor;
   - unigram: NFKC, Metaspace, Unigram with <unk>, Metaspace decoder;
   - unigram_bytes: the same with byte_fallback and the 256 <0xXX> pieces;
   - unigram_precompiled: a SentencePiece Unigram model trained with the sentencepiece library
     and a small custom normalisation rule set (NFKC of Latin-1, fullwidth forms, ligatures,
     circled numbers, number forms, letter + combining accent pairs), written as tokenizer.json
     the way transformers' SpmConverter does for T5 / XLM-R (Precompiled normaliser holding
     SentencePiece's charsmap, then Replace(" {2,}", " "); WhitespaceSplit + Metaspace), so that
     the Precompiled normaliser is checked against HF.
   For each, <name>.json beside the other fixtures holds HF's ids of the strings of
   strings.json (encode without special tokens) and the decodings, as the other fixtures do.
2. pretokenizers.json: for each pre-tokenizer specification (tokenizer.json "pre_tokenizer"
   objects, and llama.cpp's tokenizer.ggml.pre names as Sequence[Split(Regex, Isolated)]),
   a digest per string of strings.json of the [start, end) code point offsets of the pieces
   HF's pre_tokenize_str gives (see offsets()).

Usage: /work/venv/bin/python tools/tokenizer_make_model_fixtures.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_make_fixtures import make_strings  # noqa: E402

from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,  # noqa: E402
                        pre_tokenizers, processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
GPT2_LIKE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
CJK_LETTERS = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
BLOOM = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
TEKKEN_CLASSES = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
                  r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*")
CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
# llama.cpp's regex lists per tokenizer.ggml.pre (src/llama-vocab.cpp), "=name" for the
# patterns that have hand-written matchers in the C++ code.
GGUF_PRE = {
    "gpt-2": [GPT2],
    "llama3": [LLAMA3],
    "qwen2": [QWEN2],
    "deepseek-llm": [
        r"[\r\n]",
        "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
        "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
        "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
        "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
        "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
        "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
        "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
        "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
        "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
        "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
        "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
        "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
        "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", r"\s+$",
        CJK_LETTERS, r"\p{N}+"],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_LETTERS, r"\p{N}"],
    "deepseek-v3": [
        r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        r'''[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|'''
        r" ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2_LIKE, r"[0-9][0-9][0-9]"],
    "starcoder": [r"\p{N}", GPT2_LIKE],
    "bloom": [BLOOM],
    "viking": [BLOOM, r"\p{N}"],
    "tekken": [TEKKEN_CLASSES[0] + "|" + TEKKEN_CLASSES[1] +
               r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "gpt-4o": [TEKKEN_CLASSES[0] + CONTRACTIONS + "|" + TEKKEN_CLASSES[1] + CONTRACTIONS +
               r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2_LIKE, r"\p{N}+", r"[0-9][0-9][0-9]"],
}


def split(pattern, behavior="isolated", invert=False):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": behavior.capitalize()
            if behavior != "merged_with_previous" and behavior != "merged_with_next"
            else {"merged_with_previous": "MergedWithPrevious",
                  "merged_with_next": "MergedWithNext"}[behavior], "invert": invert}


# tokenizer.json pre_tokenizer objects checked directly.
SPECS = {
    "bert": {"type": "BertPreTokenizer"},
    "whitespace_split": {"type": "WhitespaceSplit"},
    "whitespace": {"type": "Whitespace"},
    "digits_individual": {"type": "Digits", "individual_digits": True},
    "digits_runs": {"type": "Digits", "individual_digits": False},
    "punctuation": {"type": "Punctuation", "behavior": "Isolated"},
    "punctuation_contiguous": {"type": "Punctuation", "behavior": "Contiguous"},
    "split_string_merged_prev": {"type": "Split", "pattern": {"String": " "},
                                 "behavior": "MergedWithPrevious", "invert": False},
    "split_merged_next": split(r"\s+", "merged_with_next"),
    "split_removed": split(r"\p{P}+", "removed"),
    "split_contiguous": split(r"\p{L}", "contiguous"),
    "split_invert": split(r"\p{L}+", "removed", invert=True),
    "sequence_digits_gpt2": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, split(GPT2)]},
}


def to_hf(spec):
    return Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": spec, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"x": 0}, "unk_token": "x"}})).pre_tokenizer


def fnv32(values):
    h = 0x811C9DC5
    for v in values:
        for shift in (0, 8, 16, 24):
            h = ((h ^ ((v >> shift) & 0xFF)) * 0x01000193) & 0xFFFFFFFF
    return h


def offsets(pre, strings):
    """Per string, FNV-1a 32 of the piece offsets (start, end, start, end, ...) as 8 hex
    digits, all strings concatenated: small, and a mismatch still names the string."""
    return "".join(f"{fnv32([x for _, o in pre.pre_tokenize_str(s) for x in o]):08x}"
                   for s in strings)


def protobuf_fields(b):
    """(field number, value) pairs of a serialized protobuf message (enough for ModelProto)."""
    def varint(i):
        v, shift = 0, 0
        while True:
            x = b[i]
            i += 1
            v |= (x & 0x7F) << shift
            shift += 7
            if not x & 0x80:
                return v, i
    i = 0
    while i < len(b):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(i)
        elif wire == 2:
            n, i = varint(i)
            v, i = b[i:i + n], i + n
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield field, v


def sentencepiece_unigram(text):
    import base64
    import tempfile
    import unicodedata

    import sentencepiece as spm
    rules = []
    cands = (list(range(0xA0, 0x250)) + list(range(0xFF01, 0xFF5F)) +
             list(range(0xFB00, 0xFB07)) + list(range(0x2460, 0x2474)) +
             list(range(0x2150, 0x2190)))
    for cp in cands:
        n = unicodedata.normalize("NFKC", chr(cp))
        if n != chr(cp):
            rules.append((chr(cp), n))
    for base in "aeiouAEIOUnNcC":
        for mark in "\u0301\u0300\u0308\u0303\u0302\u0327":
            n = unicodedata.normalize("NFKC", base + mark)
            if n != base + mark:
                rules.append((base + mark, n))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "rules.tsv"), "w", encoding="utf-8") as f:
            for a, b in rules:
                f.write(" ".join(f"{ord(c):X}" for c in a) + "\t" +
                        " ".join(f"{ord(c):X}" for c in b) + "\n")
        with open(os.path.join(tmp, "train.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(t.replace("\n", " ") for t in text))
        spm.SentencePieceTrainer.train(
            input=os.path.join(tmp, "train.txt"), model_prefix=os.path.join(tmp, "m"),
            vocab_size=3000, model_type="unigram", character_coverage=1.0, num_threads=1,
            normalization_rule_tsv=os.path.join(tmp, "rules.tsv"), minloglevel=2,
            remove_extra_whitespaces=False, add_dummy_prefix=True)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "m.model"))
    proto = sp.serialized_model_proto()
    normalizer_spec = [v for f, v in protobuf_fields(proto) if f == 3][0]
    charsmap = [v for f, v in protobuf_fields(normalizer_spec) if f == 2][0]
    vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
    special = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}
               for i in (sp.unk_id(), sp.bos_id(), sp.eos_id()) if i >= 0]
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                 "split": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
            # As T5 / XLM-R tokenizer.json files have them: runs of spaces collapsed after the
            # charsmap, white space split before the Metaspace.
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Precompiled",
                 "precompiled_charsmap": base64.b64encode(charsmap).decode()},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "WhitespaceSplit"}, metaspace]},
            "post_processor": None, "decoder": metaspace,
            "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab,
                      "byte_fallback": False}}


def training_text():
    return make_strings(6000, seed=99)[11:]


def record(name, tok, strings):
    path = os.path.join(OUT, "models", name + ".json")
    tok.save(path)
    ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    decoded = [None if d == s else d for d, s in
               ((tok.decode(i, skip_special_tokens=True), s) for i, s in zip(ids, strings))]
    with_special = [tok.encode(s).ids for s in strings[:50]]
    with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
        json.dump({"source": "tests/fixtures/tokenizer/models/" + name + ".json", "ids": ids,
                   "decoded": decoded, "ids_with_special_first50": with_special}, f,
                  ensure_ascii=False, separators=(",", ":"))
    print(f"{name}: vocab {tok.get_vocab_size()}, {sum(map(len, ids))} ids, "
          f"{os.path.getsize(path)} bytes tokenizer.json")


def main():
    os.makedirs(os.path.join(OUT, "models"), exist_ok=True)
    with open(os.path.join(OUT, "strings.json"), encoding="utf-8") as f:
        strings = json.load(f)
    text = training_text()

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    wp.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=None, lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece(prefix="##")
    wp.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=1500,
                                                           special_tokens=special))
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))])
    record("wordpiece", wp, strings)

    ug = Tokenizer(models.Unigram())
    ug.normalizer = normalizers.NFKC()
    ug.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    ug.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    ug.train_from_iterator(text, trainers.UnigramTrainer(
        vocab_size=3000, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>"))
    # The trainer numbers the special added tokens past the end of the vocabulary it had before
    # training, while the trained vocabulary holds them first: point them at the vocabulary
    # entries, as real Unigram tokenizers (T5, ALBERT) have them.
    data = json.loads(ug.to_str())
    pieces = [p for p, _ in data["model"]["vocab"]]
    for t in data["added_tokens"]:
        t["id"] = pieces.index(t["content"])
    data["post_processor"] = json.loads(processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", pieces.index("</s>"))]).__getstate__())
    ug = Tokenizer.from_str(json.dumps(data))
    record("unigram", ug, strings)

    # The same pieces plus the 256 byte pieces, with byte_fallback.
    data = json.loads(ug.to_str())
    vocab = data["model"]["vocab"]
    known = {p for p, _ in vocab}
    vocab += [[f"<0x{b:02X}>", 0.0] for b in range(256) if f"<0x{b:02X}>" not in known]
    data["model"]["byte_fallback"] = True
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    record("unigram_bytes", Tokenizer.from_str(json.dumps(data)), strings)

    record("unigram_precompiled", Tokenizer.from_str(json.dumps(sentencepiece_unigram(text))),
           strings)

    result = {"strings": "strings.json", "specs": {}, "gguf_pre": {}}
    for name, spec in SPECS.items():
        result["specs"][name] = {"pre_tokenizer": spec, "offsets": offsets(to_hf(spec), strings)}
    for name, patterns in GGUF_PRE.items():
        spec = {"type": "Sequence", "pretokenizers": [split(p) for p in patterns]}
        result["gguf_pre"][name] = {"patterns": patterns,
                                    "offsets": offsets(to_hf(spec), strings)}
    with open(os.path.join(OUT, "pretokenizers.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
    print(f"pretokenizers.json: {len(SPECS)} specs, {len(GGUF_PRE)} gguf pre names, "
          f"{os.path.getsize(os.path.join(OUT, 'pretokenizers.json'))} bytes")


if __name__ == "__main__":
    main()
