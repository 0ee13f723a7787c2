#!/usr/bin/env python3
"""Exact (float64) reference forward pass of a llama GGUF model, independent of
the Rust code: weights are read and dequantized by the `gguf` package
(llama.cpp's own Python library), everything else is float64 numpy.

Writes tests/fixtures/model/smollm2_f64.json: the prompt ids, the greedy
continuation, and for the first positions the top-20 logits, which the Rust
tests compare the CPU reference and the GPU engine against.

Re-run:  pip install gguf numpy && python3 tests/scripts/reference_f64.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import importlib.metadata
import json
import sys

import gguf
import numpy as np

PROMPT_WORDS = ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]  # "The capital of France is"
N_GREEDY = 16
N_TOP_POSITIONS = 8
TOP_K = 20


def main(path, out):
    r = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")}
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    tensors = {t.name: t for t in r.tensors}

    def weight(name):
        t = tensors[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        return w.reshape([int(d) for d in reversed(t.shape)])  # [rows, cols]

    n_layer = meta["llama.block_count"]
    n_head = meta["llama.attention.head_count"]
    n_kv = meta["llama.attention.head_count_kv"]
    n_embd = meta["llama.embedding_length"]
    hd = meta.get("llama.attention.key_length", n_embd // n_head)
    base = meta.get("llama.rope.freq_base", 10000.0)
    eps = meta["llama.attention.layer_norm_rms_epsilon"]
    embd = weight("token_embd.weight")
    out_w = weight("output.weight") if "output.weight" in tensors else embd
    out_norm = weight("output_norm.weight")
    layers = []
    for i in range(n_layer):
        layers.append({k: weight(f"blk.{i}.{k}.weight") for k in
                       ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                        "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]})

    def rmsnorm(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    inv_freq = base ** (-2.0 * np.arange(hd // 2) / hd)

    def rope(x, pos):  # x: [heads, hd]; adjacent pairs (llama.cpp "normal" mode)
        a = pos * inv_freq
        c, s = np.cos(a), np.sin(a)
        x0, x1 = x[:, 0::2], x[:, 1::2]
        out = np.empty_like(x)
        out[:, 0::2] = x0 * c - x1 * s
        out[:, 1::2] = x0 * s + x1 * c
        return out

    kc = [[] for _ in range(n_layer)]
    vc = [[] for _ in range(n_layer)]

    def forward(tok, pos):
        x = embd[tok].copy()
        for l, L in enumerate(layers):
            xb = rmsnorm(x, L["attn_norm"])
            q = rope((L["attn_q"] @ xb).reshape(n_head, hd), pos)
            k = rope((L["attn_k"] @ xb).reshape(n_kv, hd), pos)
            v = (L["attn_v"] @ xb).reshape(n_kv, hd)
            kc[l].append(k)
            vc[l].append(v)
            K = np.stack(kc[l])  # [pos, n_kv, hd]
            V = np.stack(vc[l])
            att = np.empty((n_head, hd))
            for h in range(n_head):
                g = h // (n_head // n_kv)
                s = K[:, g, :] @ q[h] / np.sqrt(hd)
                p = np.exp(s - s.max())
                p /= p.sum()
                att[h] = p @ V[:, g, :]
            x = x + L["attn_output"] @ att.reshape(-1)
            xb = rmsnorm(x, L["ffn_norm"])
            gt = L["ffn_gate"] @ xb
            h = gt / (1.0 + np.exp(-gt)) * (L["ffn_up"] @ xb)
            x = x + L["ffn_down"] @ h
        return out_w @ rmsnorm(x, out_norm)

    prompt = [tokens.index(w) for w in PROMPT_WORDS]
    pos = 0
    for t in prompt[:-1]:
        forward(t, pos)
        pos += 1
    tok = prompt[-1]
    generated, top = [], []
    for step in range(N_GREEDY):
        logits = forward(tok, pos)
        pos += 1
        if step < N_TOP_POSITIONS:
            idx = np.argsort(-logits, kind="stable")[:TOP_K]
            top.append([[int(i), float(logits[i])] for i in idx])
        tok = int(np.argmax(logits))
        generated.append(tok)
    text = "".join(tokens[t] for t in generated).replace("Ġ", " ").replace("Ċ", "\n")
    print("prompt ids", prompt, "generated", generated, repr(text), file=sys.stderr)
    with open(out, "w") as f:
        json.dump({
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "gguf_version": importlib.metadata.version("gguf"),
            "prompt": "The capital of France is",
            "prompt_ids": prompt,
            "greedy_ids": generated,
            "greedy_text": text,
            "top_logits": top,
        }, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/model/smollm2_f64.json")
