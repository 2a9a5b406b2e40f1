"""Runs the counting model through alloyforge: use.py TOKENIZER (an HF folder or a GGUF)."""
import sys

import alloyforge
import counting_model

model = alloyforge.from_native(counting_model.make(512), tokenizer=sys.argv[1])
response = model.generate("Once upon a time", max_tokens=8)
print(response.tokens, repr(response.text))
