#!/usr/bin/env python3
"""Reference pre-tokenizer splits from Python's `regex` module (the engine OpenAI's and tiktoken's patterns
were written for). Prints JSON that regex_test.go reads. Run (a Python with the regex package): python3 split_reference.py > split_reference.json"""
import json
import regex

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
TEXTS = [
    "Hello world", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\n\n\nhere",
    "I'm sure you'll see it's THE'S DON'T", "numbers 1234567 and 3.14159", "über café naïve ÅNGSTRÖM",
    "中文字符测试，还有标点。", "emoji 🤗🚀 mixed😀text", "   \n  \t  \r\n x", "code: if (a<b) { return a->c; }",
    "non\u00a0breaking\u2009thin\u3000ideographic", "a\r\n\r\nb", "Αθήνα Москва देवनागरी", "$$$ !!! ... ???",
    "x  ", " ", "", "'s'S'll'LL", "12\n\n34",
]
out = {}
for name, pat in PATTERNS.items():
    out[name] = {"pattern": pat, "cases": [[t, regex.findall(pat, t)] for t in TEXTS]}
print(json.dumps(out, ensure_ascii=False))
