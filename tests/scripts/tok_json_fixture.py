#!/usr/bin/env python3
"""A SentencePiece-style tokenizer.json, converted by Hugging Face `transformers`.

Writes tests/fixtures/tokenizer/llama-spm-tokenizer.json from llama.cpp's
ggml-vocab-llama-spm.gguf (../shared/testdata/tokenizer), so the tokenizer.json
loader is tested on the Llama 2 shape (Prepend/Replace normalizer,
ByteFallback + Strip decoder) as well as on SmolLM2's byte-level one.
transformers builds the merges from the vocabulary's scores. Before writing,
the converted tokenizer must reproduce llama.cpp's own test vectors.

Usage: .venv/bin/python tests/scripts/tok_json_fixture.py   (needs "transformers<5", tokenizers, gguf)
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[2]
VOCABS = ROOT.parent / "shared" / "testdata" / "tokenizer"
OUT = ROOT / "tests" / "fixtures" / "tokenizer" / "llama-spm-tokenizer.json"
SEP = "\n__ggml_vocab_test__\n"


def main():
    # transformers 4.x refuses GGUF files without PyTorch although the
    # tokenizer path (return_tensors=False) never uses it.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.is_torch_available = lambda: True
    from transformers import AutoTokenizer

    name = "ggml-vocab-llama-spm.gguf"
    backend = AutoTokenizer.from_pretrained(str(VOCABS), gguf_file=name).backend_tokenizer

    inputs = (VOCABS / f"{name}.inp").read_text()[: -len(SEP)].split(SEP)
    outputs = (VOCABS / f"{name}.out").read_text().splitlines()
    assert len(inputs) == len(outputs)
    for text, line in zip(inputs, outputs):
        ids = backend.encode(text, add_special_tokens=False).ids
        assert ids == [int(x) for x in line.split()], f"{text!r}: {ids} vs {line}"

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(json.loads(backend.to_str()), ensure_ascii=False) + "\n")
    print(f"wrote {OUT.name}: {len(inputs)} llama.cpp vectors reproduced")


if __name__ == "__main__":
    main()
