#!/usr/bin/env python3
"""Differential test of af-cli template against transformers' Jinja environment on random
expressions and statements. Not part of CI (needs transformers); prints every disagreement.

  /work/venv/bin/python tools/template_differential.py SEED COUNT [all|str|num|list] [AF_CLI]

Known, accepted differences: Python big integers and complex numbers (af uses int64 / double),
and Jinja's compile-time constant folding of expressions such as `(true)[1:]` (undefined there,
TypeError at run time and in af)."""
import json
import os
import random
import subprocess
import sys
import tempfile

from transformers.utils.chat_template_utils import _compile_jinja_template

random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AF_CLI = sys.argv[4] if len(sys.argv) > 4 else os.path.join(ROOT, "build", "apps", "cli", "af-cli")
WORK = tempfile.mkdtemp(prefix="af_template_diff_")
CTX = {"items": [3, 1, 2, 1], "words": ["b", "A", "c"], "d": {"b": 2, "a": 1}, "s": " Hi There ", "n": None,
       "t": True, "f": 2.5, "i": 7, "e": "", "neg": -3, "people": [{"name": "x", "age": 3}, {"name": "Y", "age": 1}]}
ATOMS = ["1", "0", "-2", "2.5", "0.1", "'ab'", "''", "'a b'", "none", "true", "false", "[1, 2]", "[]", "(1, 'x')",
         "{'k': 1}", "items", "words", "d", "s", "n", "t", "f", "i", "e", "neg", "people", "undefined_v", "people[0]",
         "d.a", "items[-1]", "s[1:3]", "items[::-1]", "'é☃'"]
BIN = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
FILT = ["length", "string", "list", "join", "join(',')", "upper", "lower", "trim", "first", "last", "sort", "unique|list",
        "reverse|list", "tojson", "int", "float", "abs", "round", "default('D')", "default('D', true)", "title",
        "capitalize", "items|list", "map('string')|list", "select|list", "reject('odd')|list", "sum", "min", "max",
        "dictsort", "wordcount", "e", "safe", "indent(2)", "replace('a', 'b')", "count", "tojson(indent=1)", "batch(2)|list"]
TESTS = ["defined", "none", "string", "number", "mapping", "iterable", "sequence", "odd", "even", "boolean", "integer",
         "float", "true", "false", "lower", "upper"]
METH = [".upper()", ".lower()", ".strip()", ".split()", ".split(' ')", ".startswith('a')", ".endswith(' ')",
        ".replace('i', 'I')", ".title()", ".find('e')", ".count('e')", ".items()|list", ".keys()|list", ".get('a')",
        ".get('z', 0)", ".values()|list", ".rstrip()", ".lstrip()"]

MODE = sys.argv[3] if len(sys.argv) > 3 else "all"
if MODE == "str":
    ATOMS = ["'ab'", "''", "'a b'", "s", "e", "'é☃'", "'Hello World'", "' x '", "'a,b,,c'", "words[0]", "d|string", "'%s!'", "'\\n'", "'<&>'"]
    BIN = ["+", "~", "==", "!=", "<", "in", "not in", "and", "or", "%"]
    FILT = ["length", "string", "upper", "lower", "trim", "first", "last", "reverse|join", "tojson", "title", "capitalize",
            "wordcount", "e", "safe", "indent(2)", "indent(1, true)", "replace('a', 'b')", "default('D', true)", "list", "unique|join"]
elif MODE == "num":
    ATOMS = ["1", "0", "-2", "2.5", "0.1", "i", "f", "neg", "true", "1e20", "3", "-0.5", "100", "items|length", "d.a"]
    BIN = ["+", "-", "*", "/", "//", "%", "**", "==", "<", ">=", "and", "or", "~"]
    FILT = ["abs", "round", "round(1)", "round(0, 'floor')", "int", "float", "string", "tojson", "default(5)"]
    METH = [".real", ".imag"]
elif MODE == "list":
    ATOMS = ["items", "words", "[1, 2]", "[]", "[3, 'a']", "people", "d|list", "d|items|list", "s.split()", "range(4)|list", "[none, true, 0]", "(1, 2)"]
    BIN = ["+", "==", "!=", "in", "not in", "and", "or", "~"]
    FILT = ["length", "list", "join", "join(',')", "first", "last", "sort|list", "unique|list", "reverse|list", "tojson", "map('string')|list",
            "select|list", "reject|list", "batch(2)|list", "string", "tojson(indent=2)", "default([0])", "selectattr('age')|list",
            "map(attribute='name')|list", "min", "max", "sort(reverse=true)"]
    METH = [".count(1)", ".index(1)", "[1:]", "[::-1]", "[-1]", "[0]"]

def expr(depth=0):
    r = random.random()
    if depth > 2 or r < 0.3:
        return random.choice(ATOMS)
    if r < 0.5:
        return f"({expr(depth+1)} {random.choice(BIN)} {expr(depth+1)})"
    if r < 0.65:
        return f"({expr(depth+1)}|{random.choice(FILT)})"
    if r < 0.75:
        return f"({expr(depth+1)} is {'not ' if random.random() < 0.3 else ''}{random.choice(TESTS)})"
    if r < 0.85:
        return f"({expr(depth+1)}){random.choice(METH)}"
    if r < 0.92:
        return f"({expr(depth+1)} if {expr(depth+1)} else {expr(depth+1)})"
    return f"(not {expr(depth+1)})"

def stmt():
    r = random.random()
    if r < 0.6:
        return "{{ " + expr() + " }}"
    if r < 0.8:
        return "{% for x in " + expr() + " %}[{{ x }}{{ loop.index }}]{% else %}E{% endfor %}"
    return "{% if " + expr() + " %}Y{% else %}N{% endif %}"

N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
json.dump(CTX, open(os.path.join(WORK, 'ctx.json'), 'w'))
mism = 0
ok = 0
for k in range(N):
    src = "".join(stmt() for _ in range(3))
    try:
        exp = _compile_jinja_template(src).render(**json.loads(json.dumps(CTX)))
        err = None
        ok += 1
    except Exception as e:
        exp, err = None, f"{type(e).__name__}: {e}"
    if exp is not None and ("object at 0x" in exp or "<generator" in exp or "<built-in" in exp or "range(" in exp or "dict_" in exp):
        continue
    open(os.path.join(WORK, 't.jinja'), 'w').write(src)
    r = subprocess.run([AF_CLI, 'template', '--template', os.path.join(WORK, 't.jinja'), '--context', os.path.join(WORK, 'ctx.json')], capture_output=True)
    got = r.stdout.decode('utf-8', 'replace')
    if err is None and (r.returncode != 0 or got != exp):
        mism += 1
        print("MISMATCH", src, "\n  exp:", repr(exp)[:300], "\n  got:", repr(got)[:300], r.stderr.decode()[:200])
    elif err is not None and r.returncode == 0:
        mism += 1
        print("NOERR", src, "\n  py:", err[:200], "\n  got:", repr(got)[:200])
print("mismatches", mism, "of", N, "python-ok", ok)
