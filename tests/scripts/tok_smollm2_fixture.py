#!/usr/bin/env python3
"""Expected token ids for SmolLM2's vocabulary, from references this project did not write.

Writes tests/fixtures/tokenizer/smollm2.json (cases) and
tests/fixtures/tokenizer/smollm2-tokenizer.json (the Hugging Face tokenizer).

Primary reference: Hugging Face `transformers` converting the GGUF vocabulary
itself (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), running on the
`tokenizers` library. Its conversion gives SmolLM2 the plain GPT-2 byte-level
pre-tokenizer; SmolLM2's published tokenizer.json splits digits first
(Digits(individual_digits=True) then ByteLevel, which is also what llama.cpp
does for `tokenizer.ggml.pre = "smollm"`). The expected ids are the converted
vocabulary and merges run through SmolLM2's pre-tokenizer; the strings where
the unpatched conversion differs (numerals such as "½" that are not ASCII
digits) are listed in the fixture under `gguf_conversion_differs`.

Cross-check: llama.cpp itself (libllama from the `cyllama` wheel, a build of
llama.cpp b9190) tokenizes the same strings from the same GGUF; every id list
must match. Its end-of-generation set and token pieces are recorded too.

Usage (CPU only, no network beyond pip):
    python -m venv .venv && .venv/bin/pip install "transformers<5" tokenizers gguf cyllama==0.2.18
    .venv/bin/python tests/scripts/tok_smollm2_fixture.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

transformers 4.x refuses GGUF files when PyTorch is absent, although reading
only the tokenizer (return_tensors=False) never touches it; the check is
patched out below instead of installing PyTorch.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "tokenizer"
MODEL = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("LLAMA_WGPU_TEST_MODEL", ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
)

CASES = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\t\n",
    "\r\n",
    "Hello world",
    " Hello world",
    "Hello  world",
    "Hello   world   ",
    "   leading and trailing   ",
    "line1\nline2\r\nline3\n\n\nline6",
    "tab\tseparated\t\tvalues",
    "    indented\n        more",
    "0",
    "42",
    " 7",
    "1234567890",
    "12345678901234567890123",
    "3.14159",
    "1,000,000 and 2.5e-10",
    "ied 4 ½ months",
    "naïve café résumé",
    "Äpfel über Straße",
    "Cửa Việt",
    "a\u0301 combining",
    "\ufb01 ligature",
    "Ω≈ç√∫ ±∞",
    "你好，世界",
    "日本語のテキスト",
    "한국어 텍스트",
    "нещо на Български",
    "🦙",
    "🦙🦙🦙",
    "👍🏽",
    "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅",
    "zero\u200bwidth",
    "\u00a0nbsp",
    "nul\u0000byte",
    "I'm sure you'll say we've done it, 'RE you?",
    "x = a+b*c; // comment",
    "def f(x):\n    return x**2\n",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "Hello<|im_end|>",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|>",
    "<repo_name>x<file_sep>y",
    "<s>not special</s>",
    "<|im_start",
    "!!!!!!",
    "------======= ......",
]


def load_hf():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.is_torch_available = lambda: True
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)


def smollm2_pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )


def hf_ids(backend, text, parse_special):
    # Special tokens are split out unless `encode_special_tokens` is set, which
    # is transformers' `split_special_tokens=True`.
    backend.encode_special_tokens = not parse_special
    try:
        return backend.encode(text, add_special_tokens=False).ids
    finally:
        backend.encode_special_tokens = False


def llama_cpp_vocab():
    try:
        import cyllama.llama.llama_cpp as L
    except ImportError:
        return None, None
    L.disable_logging()
    # vocab_only aborts in this build (llama-hparams.cpp), so the 135M model is loaded whole.
    model = L.LlamaModel(str(MODEL), L.LlamaModelParams())
    version = json.loads((Path(L.__file__).parents[1] / "build_config.json").read_text())["versions"]["llama_cpp_version"]
    return model, version


def main():
    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: run scripts/fetch-model.sh")
    hf = load_hf()
    backend = hf.backend_tokenizer
    patched = backend.__class__.from_str(backend.to_str())
    patched.pre_tokenizer = smollm2_pre_tokenizer()

    model, llama_version = llama_cpp_vocab()
    vocab = model.get_vocab() if model else None

    cases = []
    conversion_differs = []
    for text in CASES:
        case = {"text": text}
        for parse_special in (True, False):
            ids = hf_ids(patched, text, parse_special)
            raw = hf_ids(backend, text, parse_special)
            if raw != ids:
                conversion_differs.append({"text": text, "parse_special": parse_special, "gguf_conversion": raw, "smollm2": ids})
            if vocab is not None:
                ref = list(vocab.tokenize(text, False, parse_special))
                assert ids == ref, f"transformers and llama.cpp disagree on {text!r} (parse_special={parse_special}): {ids} vs {ref}"
            case["ids_special" if parse_special else "ids_plain"] = ids
        # Hugging Face's decode, special tokens shown.
        case["hf_decoded"] = patched.decode(case["ids_special"], skip_special_tokens=False)
        cases.append(case)

    fixture = {
        "model": MODEL.name,
        "reference": "transformers %s (tokenizers %s) GGUF conversion" % (
            __import__("transformers").__version__,
            __import__("tokenizers").__version__,
        ),
        "llama_cpp_cross_check": llama_version,
        "cases": cases,
        # Where transformers' own GGUF conversion (GPT-2 pre-tokenizer, no digit
        # split) tokenizes differently from SmolLM2's pre-tokenizer; not expected values.
        "gguf_conversion_differs": conversion_differs,
    }
    if vocab is not None:
        n = vocab.n_vocab
        fixture["llama_cpp_eog_ids"] = [i for i in range(n) if vocab.is_eog(i)]
        fixture["llama_cpp_bos"] = vocab.token_bos()
        fixture["llama_cpp_eos"] = vocab.token_eos()
        # Pieces as llama.cpp prints them (U+FFFD where a token holds part of a
        # character: the binding decodes lossily), special tokens rendered and not.
        sample = sorted(set(range(0, n, 97)) | set(range(0, 20)) | {i for c in cases for i in c["ids_special"] + c["ids_plain"]})
        fixture["llama_cpp_pieces"] = {
            str(i): [vocab.token_to_piece(i, 0, True), vocab.token_to_piece(i, 0, False)] for i in sample
        }

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "smollm2.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    # SmolLM2's tokenizer as Hugging Face runs it, for the tokenizer.json loader.
    # The GGUF conversion adds `<|im_start|>` (the GGUF's BOS) in a
    # post-processor although the file says add_bos_token = false; dropped.
    tokenizer_json = json.loads(patched.to_str())
    tokenizer_json["post_processor"] = None
    (OUT / "smollm2-tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases; llama.cpp cross-check: {llama_version or 'not available'}")


if __name__ == "__main__":
    main()
