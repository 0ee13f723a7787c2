#!/usr/bin/env python3
"""Does llama.cpp load, and compute the same thing from, a GGUF written by
`llama-wgpu convert`? A one-off check (not CI; docs/interop.md has a run).

For each committed transformers fixture (tests/fixtures/hf, made by
tests/scripts/hf_fixtures.py) and each output type, converts the folder with
`llama-wgpu convert`, then on the converted file runs
  - llama.cpp (scripts/llama-logits.cpp, CPU build of scripts/llama-cpp.sh):
    its tokenization, full logits of the last prompt positions, greedy ids;
  - llama-wgpu `generate --temp 0 --json --top-logits K`: its tokenization,
    greedy ids and the top-K logits of each step;
and compares both with transformers' ids, logits and greedy continuation
recorded in tests/fixtures/hf/expected.json (computed on the original
folder). Logit differences are max |a - b| over the compared entries divided
by the largest |logit| of the transformers row (the "logit scale").

Then, for every file that is not f32 (and a q4_0 one), llama.cpp's
`llama-quantize --allow-requantize FILE OUT F32` dequantizes it with
llama.cpp's own code, and each tensor is compared bit for bit with gguf-py's
dequantization of the same file (gguf-py from the llama.cpp sources, numpy
needed): equal means llama.cpp reads our blocks as we meant them, so any
logit difference on those files is arithmetic precision, not the file.

    scripts/interop-check.py [--llama-wgpu BIN] [--out DIR]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests/fixtures/hf"

# (folder, adapters, convert --type, expected.json model key). f32 files are
# the exact check: weights as transformers used them (it computed in f32, from
# the BF16 and F16 checkpoints too), llama.cpp run with an f32 KV cache and no
# flash attention, so any difference beyond f32 rounding is a fault in the
# file. The other types are what users convert to; there llama.cpp's CPU
# backend also rounds activations (to bf16 for BF16 weights, to q8_0 blocks
# for Q8_0), so their rows are reported, not judged.
CASES = [
    ("gqa-f32", [], "f32", "gqa-f32"),
    ("gqa-f32", [], "f16", "gqa-f32"),
    ("gqa-f32", [], "q8_0", "gqa-f32"),
    ("gqa-f32", ["lora-a"], "f32", "gqa-f32+lora-a"),
    ("tied-bf16", [], "f32", "tied-bf16"),
    ("tied-bf16", [], "bf16", "tied-bf16"),
    ("tied-bf16", [], "q8_0", "tied-bf16"),
    ("spm-f16", [], "f32", "spm-f16"),
    ("spm-f16", [], "f16", "spm-f16"),
    ("spm-f16", [], "q8_0", "spm-f16"),
]
# Exact rows: llama-wgpu's own f32 CPU reference agrees with transformers to
# 2.5e-6 of the logit scale on these models (docs/ARCHITECTURE.md); 1e-5
# leaves room for another summation order, while a wrong permutation, norm,
# epsilon or tensor is off by more than 1e-2.
EXACT_TOL = 1e-5
# Extra files for the dequantization check only (no 256-column rows in the
# fixtures, so no K-quants).
DEQUANT_ONLY = [("gqa-f32", "q4_0")]


def run(cmd, env=None):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, errors="replace", env={**os.environ, **(env or {})})
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["(no message)"])[-1]
    return p.stdout, None


def rel_diff(a, b, scale):
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    ap.add_argument("--llama-wgpu", default=str(target / "release/llama-wgpu"))
    ap.add_argument("--llama-logits", default=str(REPO / "target/llama.cpp/build-cpu/bin/llama-logits"))
    ap.add_argument("--out", default=str(REPO / "target/llama.cpp/interop"), help="where converted files go")
    ap.add_argument("--llama-quantize", default=str(REPO / "target/llama.cpp/build-cpu/bin/llama-quantize"))
    ap.add_argument("--top", type=int, default=20, help="top logits compared with llama-wgpu")
    args = ap.parse_args()
    for b in (args.llama_wgpu, args.llama_logits):
        if not Path(b).exists():
            sys.exit(f"error: {b} not found (cargo build --release; scripts/llama-cpp.sh build cpu)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expected = json.loads((FIXTURES / "expected.json").read_text())["cases"]

    rows = []
    failures = 0
    for folder, adapters, ty, key in CASES:
        name = "+".join([folder] + adapters) + f".{ty}.gguf"
        path = out / name
        conv = [args.llama_wgpu, "convert", FIXTURES / folder, "-o", path, "--type", ty, "--force"]
        for a in adapters:
            conv += ["--lora", FIXTURES / a]
        _, err = run(conv)
        if err:
            rows.append((name, "-", f"convert failed: {err}", "", "", "", "", ""))
            failures += 1
            continue
        for case in (c for c in expected if c["model"] == key):
            prompt, n = case["prompt"], len(case["greedy"])
            k = case["logits_from"]
            exact = ty == "f32"
            cpp_out, err = run([args.llama_logits, "-m", path, "-p", prompt, "-n", n, "--from", k]
                               + (["--f32-kv"] if exact else []))
            if err:
                rows.append((name, prompt, f"llama.cpp failed: {err}", "", "", "", "", ""))
                failures += 1
                continue
            cpp = json.loads(cpp_out)
            wg_out, err = run([args.llama_wgpu, "generate", "-m", path, "-p", prompt, "-n", n, "--temp", 0,
                               "--ignore-eos", "--json", "--top-logits", args.top, "-q"])
            if err:
                rows.append((name, prompt, f"llama-wgpu failed: {err}", "", "", "", "", ""))
                failures += 1
                continue
            wg = json.loads(wg_out)
            hf_rows = case["logits"]
            # transformers vs llama.cpp: every logit of the recorded positions.
            d_cpp_hf = max(rel_diff(c, h, max(abs(x) for x in h)) for c, h in zip(cpp["logits"], hf_rows))
            # llama-wgpu vs llama.cpp: llama-wgpu's top-K at the last prompt
            # position against llama.cpp's logits for the same ids.
            last = cpp["logits"][-1]
            top = wg["top_logits"][0]
            d_wg_cpp = max(abs(v - last[i]) for i, v in top) / max(abs(x) for x in hf_rows[-1])
            same = lambda a, b: "same" if a == b else f"{a} vs {b}"
            ids = "same" if cpp["ids"] == case["ids"] == wg["prompt_ids"] else (
                f"llama.cpp {cpp['ids']}, llama-wgpu {wg['prompt_ids']}, transformers {case['ids']}")
            g_cpp_hf = same(cpp["greedy"], case["greedy"])
            g_wg_cpp = same(wg["generated_ids"], cpp["greedy"])
            if ids != "same" or (exact and (g_cpp_hf != "same" or d_cpp_hf > EXACT_TOL)):
                failures += 1
            cache = "f32, no FA (exact)" if exact else "f16 (default)"
            rows.append((name, prompt, cache, ids, g_cpp_hf, g_wg_cpp, f"{d_cpp_hf:.1e}", f"{d_wg_cpp:.1e}"))

    print("| file (`llama-wgpu convert`) | prompt | llama.cpp KV cache | prompt ids (both engines vs transformers) "
          "| greedy ids: llama.cpp vs transformers | llama-wgpu vs llama.cpp "
          f"| logits: llama.cpp vs transformers | llama-wgpu vs llama.cpp (top {args.top}) |")
    print("| --- | --- | --- | --- | --- | --- | ---: | ---: |")
    for name, prompt, *cols in rows:
        print(f"| {name} | {json.dumps(prompt, ensure_ascii=False)} | " + " | ".join(cols) + " |")
    print()

    for folder, ty in DEQUANT_ONLY:
        path = out / f"{folder}.{ty}.gguf"
        _, err = run([args.llama_wgpu, "convert", FIXTURES / folder, "-o", path, "--type", ty, "--force"])
        if err:
            sys.exit(f"error: convert {folder} --type {ty}: {err}")
    files = [out / ("+".join([f] + a) + f".{t}.gguf") for f, a, t, _ in CASES if t != "f32"]
    files += [out / f"{f}.{t}.gguf" for f, t in DEQUANT_ONLY]
    failures += dequant_check(files, args, out)
    sys.exit(1 if failures else 0)


def dequant_check(files, args, out):
    """llama.cpp's dequantization of each file against gguf-py's."""
    gguf_py = sorted((REPO / "target/llama.cpp").glob("llama_cpp_python-*/vendor/llama.cpp/gguf-py"))
    try:
        import numpy as np
        sys.path.insert(0, str(gguf_py[-1]))
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except (ImportError, IndexError) as e:
        print(f"dequantization check NOT RUN: {e} (python3 -m pip install numpy; scripts/llama-cpp.sh fetch)")
        return 1
    if not Path(args.llama_quantize).exists():
        print(f"dequantization check NOT RUN: {args.llama_quantize} not found")
        return 1
    failures = 0
    print("| file | tensors | llama.cpp's dequantization (`llama-quantize ... F32`) vs gguf-py's |")
    print("| --- | ---: | --- |")
    for f in files:
        deq = out / (f.stem + ".llama-cpp-f32.gguf")
        _, err = run([args.llama_quantize, "--allow-requantize", f, deq, "F32"])
        if err:
            print(f"| {f.name} | - | llama-quantize failed: {err} |")
            failures += 1
            continue
        ours = GGUFReader(f).tensors
        theirs = {t.name: t for t in GGUFReader(deq).tensors}
        bad = []
        for t in ours:
            c = theirs.get(t.name)
            a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            if c is None or list(c.shape) != list(t.shape):
                bad.append(f"{t.name}: missing or reshaped")
            elif not np.array_equal(a.view(np.uint32), np.asarray(c.data, dtype=np.float32).reshape(-1).view(np.uint32)):
                bad.append(f"{t.name}: max |diff| {float(np.max(np.abs(a - np.asarray(c.data).reshape(-1)))):.2e}")
        if len(theirs) != len(ours):
            bad.append(f"{len(theirs)} tensors after llama-quantize, {len(ours)} before")
        types = sorted({t.tensor_type.name for t in ours})
        verdict = "bit-identical" if not bad else "DIFFERS: " + "; ".join(bad[:3])
        failures += bool(bad)
        print(f"| {f.name} ({', '.join(types)}) | {len(ours)} | {verdict} |")
    return failures


if __name__ == "__main__":
    main()
