#!/usr/bin/env python3
"""Records what Python's unicodedata gives for every code point, compactly, so that the C++
normalisers can be checked against it over the whole code space without Python.

Writes tests/fixtures/tokenizer/unicode_forms.json:
  "digests": {form: [17 hex strings]} -- per plane, FNV-1a 64 over the UTF-32 output of
             form(chr(cp)) for every cp of the plane (surrogates skipped), each output followed
             by 0xFFFFFFFF; form is NFC, NFD, NFKC, NFKD or lower (str.lower of each character);
  "strings": [{"in": s, "NFC": ..., "NFD": ..., "NFKC": ..., "NFKD": ..., "lower": ...}] --
             random sequences of letters, combining marks and Hangul jamo (reordering and
             composition across characters).
Run: /work/venv/bin/python tools/tokenizer_make_unicode_fixture.py
"""
import json
import os
import random
import unicodedata

FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1
FORMS = ["NFC", "NFD", "NFKC", "NFKD", "lower"]


def apply(form, s):
    # Lower case character by character, as HF's Lowercase normaliser (Rust char::to_lowercase)
    # does: no final-sigma context rule, unlike str.lower on a whole string.
    if form == "lower":
        return "".join(c.lower() for c in s)
    return unicodedata.normalize(form, s)


def fnv_update(h, value):
    for shift in (0, 8, 16, 24):
        h ^= (value >> shift) & 0xFF
        h = (h * FNV_PRIME) & MASK
    return h


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = {}
    for form in FORMS:
        planes = []
        for plane in range(17):
            h = FNV_OFFSET
            for cp in range(plane << 16, (plane + 1) << 16):
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                for c in apply(form, chr(cp)):
                    h = fnv_update(h, ord(c))
                h = fnv_update(h, 0xFFFFFFFF)
            planes.append(f"{h:016x}")
        digests[form] = planes
    rng = random.Random(7)
    pool = [0x41, 0x61, 0x45, 0x65, 0x4F, 0x3A9, 0x1E0B, 0x300, 0x301, 0x302, 0x303, 0x308, 0x323,
            0x327, 0x328, 0x31B, 0x345, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xFB01, 0x2460, 0xFF21,
            0x212B, 0x1E9B, 0x130, 0x3A3, 0xDF, 0x5B4, 0x5B7, 0x93C, 0x915, 0x0F73, 0x0F71]
    strings = []
    for _ in range(300):
        s = "".join(chr(rng.choice(pool)) for _ in range(rng.randint(1, 8)))
        entry = {"in": s}
        for form in FORMS:
            entry[form] = apply(form, s)
        strings.append(entry)
    out = os.path.join(root, "tests", "fixtures", "tokenizer", "unicode_forms.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"unicode_version": unicodedata.unidata_version, "digests": digests,
                   "strings": strings}, f, ensure_ascii=False, indent=0)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
