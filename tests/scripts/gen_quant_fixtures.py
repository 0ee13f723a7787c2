#!/usr/bin/env python3
"""Dequantization test vectors for tests/quant_dequant.rs, made by llama.cpp's
own Python library (gguf-py, `gguf.quants`).

Re-run from the repository root (needs `pip install numpy gguf`):

    python3 tests/scripts/gen_quant_fixtures.py

The committed fixtures were made with gguf 0.19.0 and numpy 2.4.6; the script
records the versions it ran with in tests/fixtures/quant/VERSIONS.txt. The
output is deterministic (fixed seeds), so a re-run with the same versions
reproduces the files byte for byte.

For each type NAME it writes to tests/fixtures/quant/:

    NAME.bin   the tensor's raw bytes: whole blocks in GGUF layout
    NAME.f32   gguf.quants.dequantize(NAME.bin) as little-endian f32, one per element

The tensor is the concatenation of
  - for types gguf.quants.quantize supports: deterministic random f32 data with
    awkward values (zeros, constant blocks, negatives only, one large outlier,
    tiny and large magnitudes), quantized by gguf.quants.quantize;
  - for every type: random block bytes whose f16 scale fields are set to finite
    values of many magnitudes and both signs, including zero, f16 subnormals
    and +-65504, plus an all-zero block and all-ones blocks at the extreme scales.
"""

from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "quant"

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# Byte offsets of each block's f16 fields (scale d, and min m/dmin where the
# format has one), per ggml-common.h. Every other byte is random.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}

# Blocks per quantized type: enough to hit every code path, small enough to commit.
N_QUANTIZED_BLOCKS = 24
N_RANDOM_BLOCKS = 40
# Elements per float type, for each of the two parts.
N_FLOAT_ELEMENTS = 1024

F16_MAX = 65504.0
F16_MIN_SUBNORMAL = 2.0 ** -24
F16_MIN_NORMAL = 2.0 ** -14


def awkward_f32(rng: np.random.Generator, block_size: int, n_blocks: int) -> np.ndarray:
    """Input data for quantize(): one row of n_blocks blocks, each of a different kind.

    Magnitudes stay below ~3e4 so that the f16 scales quantize() computes
    (e.g. max / -8, (max - min) / 15) stay finite."""
    kinds = [
        lambda: rng.standard_normal(block_size),
        lambda: np.zeros(block_size),
        lambda: np.full(block_size, 0.7),  # max == min: Q4_1/Q5_1 scale 0
        lambda: -np.abs(rng.standard_normal(block_size)) * 3,
        lambda: rng.uniform(0, 5, block_size),
        lambda: np.where(np.arange(block_size) == 5, 3e4, 0.0),  # lone outlier among zeros
        lambda: rng.standard_normal(block_size) * 1e-3,
        lambda: rng.standard_normal(block_size) * 1e-6,  # scales become f16 subnormals
        lambda: rng.standard_normal(block_size) * 1e3,
        lambda: rng.standard_normal(block_size) * 10.0 ** rng.uniform(-4, 4, block_size),
        lambda: np.where(np.arange(block_size) % 2 == 0, -2e4, 2e4),
        lambda: np.round(rng.standard_normal(block_size) * 4),  # exact small integers
    ]
    blocks = [kinds[i % len(kinds)]() for i in range(n_blocks)]
    return np.concatenate(blocks).astype(np.float32).reshape(1, -1)


def scale_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """n finite f16 scales: magnitudes from subnormal to max, random signs."""
    magnitude = 10.0 ** rng.uniform(-7.5, np.log10(F16_MAX), n)
    sign = rng.choice([-1.0, 1.0], n)
    values = np.clip(sign * magnitude, -F16_MAX, F16_MAX).astype(np.float16)
    # Every few blocks an exact special value instead.
    specials = np.array([0.0, -0.0, F16_MAX, -F16_MAX, F16_MIN_SUBNORMAL,
                         -F16_MIN_SUBNORMAL, F16_MIN_NORMAL, 1.0, -1.0], dtype=np.float16)
    pick = rng.random(n) < 0.2
    values[pick] = rng.choice(specials, pick.sum())
    assert np.isfinite(values).all()
    return values


def random_blocks(rng: np.random.Generator, name: str, n_blocks: int) -> np.ndarray:
    """(n_blocks, type_size) random block bytes with finite f16 scale fields."""
    _, type_size = gguf.GGML_QUANT_SIZES[T[name]]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    # Every quant and sub-block scale at its maximum: the extremes of each formula.
    blocks[1:3] = 0xFF
    for at in F16_FIELDS[name]:
        values = scale_values(rng, n_blocks)
        values[1], values[2] = F16_MAX, -F16_MAX
        blocks[:, at:at + 2] = values.astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    blocks[0] = 0  # all-zero block: d = 0 times negative quants gives -0.0
    return blocks


def random_float_bits(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """Random bit patterns of a float type, excluding Inf/NaN, as raw bytes."""
    if name == "F32":
        bits = rng.integers(0, 2 ** 32, n, dtype=np.uint32)
        bits = bits[(bits & 0x7F800000) != 0x7F800000]
    else:
        exponent_mask = 0x7C00 if name == "F16" else 0x7F80
        bits = rng.integers(0, 2 ** 16, n, dtype=np.uint16)
        bits = bits[(bits & exponent_mask) != exponent_mask]
    return bits.astype(bits.dtype.newbyteorder("<")).view(np.uint8)


def float_inputs(rng: np.random.Generator, name: str) -> np.ndarray:
    """Values for quantize() to round into a float type, including its edge cases."""
    values = [rng.standard_normal(N_FLOAT_ELEMENTS - 64) * 10.0 ** rng.uniform(-6, 6, N_FLOAT_ELEMENTS - 64)]
    if name == "F16":
        # Subnormals, the largest finite values and round-to-even ties.
        edges = [0.0, -0.0, 6e-8, -3e-6, 6.1e-5, 65504.0, -65504.0, 65519.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11]
        values = [np.clip(values[0], -65504, 65504)]
    elif name == "BF16":
        edges = [0.0, -0.0, 3e38, -3.3e38, 1e-40, -1e-45, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8]
    else:
        edges = [0.0, -0.0, 3.4e38, -3.4e38, 1e-40, -1e-45, 1.17549435e-38]
    edges = np.array(edges * (64 // len(edges) + 1))[:64]
    return np.concatenate(values + [edges]).astype(np.float32).reshape(1, -1)


def can_quantize(name: str) -> bool:
    block_size, _ = gguf.GGML_QUANT_SIZES[T[name]]
    try:
        quantize(np.zeros((1, block_size), dtype=np.float32), T[name])
        return True
    except NotImplementedError:
        return False


def fixture(name: str) -> tuple[bytes, np.ndarray]:
    qtype = T[name]
    # A seed per type, so adding or changing one type leaves the others' files alone.
    rng = np.random.default_rng(1000 + int(qtype))
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    parts = []
    if name in ("F32", "F16", "BF16"):
        parts.append(quantize(float_inputs(rng, name), qtype).view(np.uint8).reshape(1, -1))
        parts.append(random_float_bits(rng, name, N_FLOAT_ELEMENTS).reshape(1, -1))
    else:
        if can_quantize(name):
            data = awkward_f32(rng, block_size, N_QUANTIZED_BLOCKS)
            parts.append(quantize(data, qtype).reshape(1, -1))
        parts.append(random_blocks(rng, name, N_RANDOM_BLOCKS).reshape(1, -1))
    raw = np.concatenate(parts, axis=1)
    assert raw.dtype == np.uint8 and raw.size % type_size == 0
    expected = np.asarray(dequantize(raw, qtype), dtype=np.float32).reshape(-1)
    assert expected.size == raw.size // type_size * block_size
    assert not np.isnan(expected).any(), f"{name}: NaN in expected values"
    return raw.tobytes(), expected


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in TYPES:
        raw, expected = fixture(name)
        (OUT / f"{name}.bin").write_bytes(raw)
        (OUT / f"{name}.f32").write_bytes(expected.astype("<f4").tobytes())
        total += len(raw) + expected.size * 4
        print(f"{name:5} {expected.size:6} elements, quantize() {'used' if can_quantize(name) else 'unsupported'}")
    (OUT / "VERSIONS.txt").write_text(
        "Made by tests/scripts/gen_quant_fixtures.py with\n"
        f"gguf {gguf_version()}\nnumpy {np.__version__}\n")
    print(f"{total} bytes in {OUT}")


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


if __name__ == "__main__":
    main()
