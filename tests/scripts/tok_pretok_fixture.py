#!/usr/bin/env python3
"""Expected pre-tokenizer splits, from Hugging Face `tokenizers` (Oniguruma regexes).

Writes tests/fixtures/tokenizer/pretok.json: for each `tokenizer.ggml.pre`
name, the pieces the model's own tokenizer.json pre-tokenizer cuts each text
into. llama.cpp (and this crate) spell some regexes differently (the
`(?i:...)` contractions written out, the GPT-2 regex run by a hand-written
splitter); this checks they split as the originals do.

  gpt-2   ByteLevel(use_regex=True), GPT-2's tokenizer.json
  smollm  Digits(individual_digits=True) + ByteLevel, SmolLM2's tokenizer.json
  llama3  Split(Regex(...), "isolated"), Meta-Llama-3's tokenizer.json regex
  qwen2   Split(Regex(...), "isolated"), Qwen2's tokenizer.json regex
  tekken  Split(Regex(...), "isolated"), Mistral Nemo's tokenizer.json regex

(the three regexes are quoted in llama.cpp's llama-vocab.cpp as "original regex
from tokenizer.json"). ByteLevel output is mapped back from GPT-2's printable
byte alphabet to text.

Usage: python tests/scripts/tok_pretok_fixture.py   (needs tokenizers)
"""

import json
from pathlib import Path

from tokenizers import Regex, pre_tokenizers

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "tokenizer" / "pretok.json"

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Mistral Nemo's tokenizer.json (quoted in llama-vocab.cpp as "original regex from tokenizer.json").
TEKKEN = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CASES = [
    "Hello world",
    " Hello  world   ",
    "\n\n \n  x\t\ty \r\n z",
    "   leading",
    "trailing   ",
    "I'm sure you'll say we've done it, 'RE you? I'M SURE YOU'LL",
    "don't DON'T d'oh 'tis",
    "1234567 12 3.14159 1,000,000",
    "ied 4 ½ months ²³ ٣٤٥",
    "naïve café résumé Äpfel Cửa Việt",
    "你好，世界！日本語のテキスト 한국어",
    "🦙🦙 🚀 (normal) 😶\u200d🌫️ ✅",
    "def f(x):\n    return x**2  # comment\n\n\nclass A: pass",
    "<|im_start|>user\nHi<|im_end|>",
    "!!!!!!?????? ------======= ......",
    "a\u0301 \ufb01 \u00a0nbsp zero\u200bwidth",
    "x=a+b*c;//c\n\t\t}",
    "CamelCase XMLHttpRequest iPhone aÄb ÄÖü ÉCOLE élève ǅungla",
    "path/to/file/\n/etc //x\r\n",
]


def byte_level_alphabet():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


UNBYTE = byte_level_alphabet()


def unbyte(piece):
    return bytes(UNBYTE[c] for c in piece).decode("utf-8")


def split(regex):
    return pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)


FAMILIES = {
    "gpt-2": (pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), True),
    "smollm": (
        pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        ),
        True,
    ),
    "llama3": (split(LLAMA3), False),
    "qwen2": (split(QWEN2), False),
    "tekken": (split(TEKKEN), False),
}


def main():
    import tokenizers

    splits = {}
    for name, (pre, byte_level) in FAMILIES.items():
        rows = []
        for text in CASES:
            pieces = [p for p, _ in pre.pre_tokenize_str(text)]
            rows.append([unbyte(p) for p in pieces] if byte_level else pieces)
            assert "".join(rows[-1]) == text
        splits[name] = rows
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"tokenizers": tokenizers.__version__, "cases": CASES, "splits": splits}, ensure_ascii=False, indent=1)
        + "\n"
    )
    print(f"wrote {len(CASES)} cases for {', '.join(FAMILIES)}")


if __name__ == "__main__":
    main()
