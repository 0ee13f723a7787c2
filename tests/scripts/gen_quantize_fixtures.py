#!/usr/bin/env python3
"""Quantizer test vectors for tests/quant_quantize.rs, made by llama.cpp's
Python library (gguf-py's `gguf.quants.quantize`, bit-exact with
ggml-quants.c's reference quantizers for the types it implements: Q8_0, Q4_0).
The k-quants have no quantizer there; the tests check their round trip.

Re-run from the repository root (needs `pip install numpy gguf`):

    python3 tests/scripts/gen_quantize_fixtures.py

Writes tests/fixtures/quant/quantize-input.f32 (little-endian f32, a multiple
of 256 elements) and quantize-NAME.bin (its quantization). Deterministic.
"""

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "quant"


def data():
    rng = np.random.default_rng(7)
    parts = [
        rng.standard_normal(1024).astype(np.float32),
        (rng.standard_normal(256) * 1e-3).astype(np.float32),
        (rng.uniform(-50, 50, 256)).astype(np.float32),
        np.zeros(32, np.float32),                     # a zero block
        np.full(32, 0.75, np.float32),                # constant
        -np.abs(rng.standard_normal(32)).astype(np.float32),  # negatives only
        np.concatenate([rng.standard_normal(31), [40.0]]).astype(np.float32),  # one outlier
        np.linspace(-1, 1, 32, dtype=np.float32),     # exact half-way values
        rng.standard_normal(96).astype(np.float32),
    ]
    return np.concatenate(parts)


def main():
    x = data()
    assert x.size % 256 == 0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quantize-input.f32").write_bytes(x.astype("<f4").tobytes())
    for t in (T.Q8_0, T.Q4_0):
        q = quantize(x.reshape(1, -1), t)
        (OUT / f"quantize-{t.name}.bin").write_bytes(q.tobytes())
    print(f"wrote {x.size} elements to {OUT}")


if __name__ == "__main__":
    main()
