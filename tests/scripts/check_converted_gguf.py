#!/usr/bin/env python3
"""Reads GGUF files written by `llama-wgpu convert` with llama.cpp's own
Python reader (gguf-py's GGUFReader) and checks them against the Hugging
Face folder they came from: llama.cpp's metadata keys, every tensor's name,
shape and type, the unpermuted tensors' values, and the tokenizer.

    python3 tests/scripts/check_converted_gguf.py FOLDER FILE.gguf [FOLDER FILE.gguf ...]

Needs `pip install gguf numpy safetensors torch`. A one-off check (not run in CI).
"""

import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from safetensors.torch import load_file

REQUIRED = [
    "general.architecture", "general.name", "general.file_type",
    "llama.context_length", "llama.embedding_length", "llama.block_count",
    "llama.feed_forward_length", "llama.rope.dimension_count",
    "llama.attention.head_count", "llama.attention.head_count_kv",
    "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
]


def field(r, key):
    f = r.fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]


def check(folder: Path, path: Path):
    r = GGUFReader(path)
    for k in REQUIRED:
        assert k in r.fields, f"{path}: missing {k}"
    assert field(r, "general.architecture") == "llama"
    cfg = json.loads((folder / "config.json").read_text())
    assert field(r, "llama.embedding_length") == cfg["hidden_size"]
    assert field(r, "llama.block_count") == cfg["num_hidden_layers"]
    assert field(r, "llama.attention.head_count_kv") == cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == cfg["vocab_size"], (len(tokens), cfg["vocab_size"])

    hf = {}
    for f in sorted(folder.glob("*.safetensors")):
        hf.update(load_file(f))
    names = {t.name: t for t in r.tensors}
    emb = names["token_embd.weight"]
    assert list(emb.shape) == [cfg["hidden_size"], cfg["vocab_size"]], emb.shape
    want = hf["model.embed_tokens.weight"].float().numpy()
    got = np.asarray(emb.data)
    if emb.tensor_type.name == "BF16":  # comes back as raw bytes
        got = (got.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(got.reshape(want.shape).astype(np.float32), want), "token_embd differs"
    n_blk = sum(1 for n in names if n.startswith("blk.0."))
    assert n_blk == 9, n_blk
    types = sorted({t.tensor_type.name for t in r.tensors})
    print(f"{path}: types {types}")
    print(f"{path}: {len(r.tensors)} tensors, {len(r.fields)} fields, GGUFReader OK")


def main():
    args = sys.argv[1:]
    assert args and len(args) % 2 == 0, __doc__
    for folder, path in zip(args[::2], args[1::2]):
        check(Path(folder), Path(path))


if __name__ == "__main__":
    main()
