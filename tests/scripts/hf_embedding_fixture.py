#!/usr/bin/env python3
"""transformers' final hidden states (after the model's last RMSNorm, before
lm_head: `LlamaModel(...).last_hidden_state`) for the tiny checkpoints that
tests/scripts/hf_fixtures.py wrote, as the reference for embeddings in
tests/embeddings.rs. The same vectors are llama.cpp's per-token embeddings
(pooling `none`); pooled ones follow from them.

Re-run from the repository root after hf_fixtures.py (needs torch and
transformers; CPU only, float32):

    python3 tests/scripts/hf_embedding_fixture.py

Writes tests/fixtures/hf/embeddings.json: per case the model folder, the
token ids (those of expected.json's prompts) and the hidden state of every
position.
"""

import json
from pathlib import Path

import torch
from transformers import LlamaModel

ROOT = Path("tests/fixtures/hf")


def main():
    expected = json.loads((ROOT / "expected.json").read_text())["cases"]
    cases = []
    for name in ["gqa-f32", "tied-bf16"]:
        model = LlamaModel.from_pretrained(ROOT / name, dtype=torch.float32).eval()
        for c in expected:
            if c["model"] != name:
                continue
            with torch.no_grad():
                h = model(torch.tensor([c["ids"]])).last_hidden_state[0]
            cases.append({
                "model": name, "prompt": c["prompt"], "ids": c["ids"],
                "hidden": [[round(float(v), 6) for v in row] for row in h],
            })
    (ROOT / "embeddings.json").write_text(json.dumps({"cases": cases}) + "\n")
    print(f"{len(cases)} cases, {sum(len(c['ids']) for c in cases)} positions")


if __name__ == "__main__":
    main()
