#!/usr/bin/env python3
"""llama-wgpu against llama.cpp on the same machine, the same model, one run.

Runs `llama-wgpu bench` and llama.cpp's `llama-bench` (its Vulkan backend on
the same Vulkan driver, and its CPU backend on the same cores) in rounds: each
round runs every engine once (`-r 1`: one warm-up run, then one measured run
of each test), rotating the order, so drift in machine speed (a shared VM
drifts 10-20% between minutes) affects all engines alike. Then prints one
markdown table: t/s per engine and test (mean +- sd over the rounds) and the
ratio llama-wgpu / each llama.cpp backend.

llama.cpp is built by `scripts/llama-cpp.sh build` (not CI). lavapipe is a CPU
device, which ggml-vulkan skips unless GGML_VK_VISIBLE_DEVICES names it;
`--vk-device` (default 0) sets it.

    scripts/side-by-side.py                      # SmolLM2 Q4_1, pp256 and tg32, 3 rounds
    scripts/side-by-side.py -m FILE.gguf -p 512 -n 128 -r 5 --engines wgpu,vulkan
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def default_wgpu() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "llama-wgpu"


def run_json(cmd, env=None):
    """Runs one benchmark process; its stdout is JSON, its stderr is shown
    only if it fails."""
    print("+ " + " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    p = subprocess.run(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        sys.exit(f"error: {cmd[0]} exited with {p.returncode}")
    try:
        return json.loads(p.stdout), p.stderr
    except json.JSONDecodeError as e:
        sys.exit(f"error: {cmd[0]} did not print JSON ({e}): {p.stdout[:300]!r}")


class Wgpu:
    name, backend = "llama-wgpu", "wgpu (Vulkan)"

    def __init__(self, args):
        self.bin = args.llama_wgpu
        self.args = args
        self.device = "?"

    def run(self):
        a = self.args
        rows, _ = run_json(
            [self.bin, "bench", "-m", a.model, "-p", a.n_prompt, "-n", a.n_gen, "-r", 1, "-o", "json"]
            + a.wgpu_arg
        )
        out = {}
        for r in rows:
            self.device = f"{r['adapter']} ({r['backend']})"
            out[r["test"]] = r["samples_tokens_per_second"]
        return out


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, args, backend):
        self.args = args
        self.backend = backend
        build = Path(args.llama_cpp_dir) / f"build-{backend}" / "bin" / "llama-bench"
        if not build.exists():
            sys.exit(f"error: {build} not found (scripts/llama-cpp.sh build {backend})")
        self.bin = build
        self.device = "?"
        self.commit = "?"

    def run(self):
        a = self.args
        cmd = [self.bin, "-m", a.model, "-p", a.n_prompt, "-n", a.n_gen, "-r", 1, "-o", "json", "-t", a.threads]
        env = {}
        if self.backend.startswith("vulkan"):
            cmd += ["-ngl", 99]
            env["GGML_VK_VISIBLE_DEVICES"] = a.vk_device
        else:
            cmd += ["-ngl", 0]
        rows, _ = run_json(cmd + a.llama_bench_arg, env)
        out = {}
        for r in rows:
            if self.backend.startswith("vulkan") and "Vulkan" not in r.get("backends", ""):
                sys.exit(f"error: llama-bench ran on {r.get('backends')!r}, not Vulkan")
            self.device = r.get("gpu_info") or r.get("cpu_info") or "?"
            self.commit = r.get("build_commit", "?")
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            out[test] = r["samples_ts"]
        return out


def uptime():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return ["?"] * 3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=str(REPO / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("-p", "--n-prompt", default="256", help="prompt lengths, comma-separated (both engines' -p)")
    ap.add_argument("-n", "--n-gen", default="32", help="generated tokens, comma-separated (both engines' -n)")
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds; each runs every engine once")
    ap.add_argument("--engines", default="wgpu,vulkan,cpu",
                    help="subset of wgpu,vulkan,cpu; vulkan-portable is the build for the GPU bundle")
    ap.add_argument("--llama-wgpu", default=str(default_wgpu()), help="llama-wgpu binary (a release build)")
    ap.add_argument("--llama-cpp-dir", default=str(REPO / "target/llama.cpp"), help="where scripts/llama-cpp.sh built")
    ap.add_argument("--threads", default=str(os.cpu_count()), help="llama.cpp CPU threads (-t)")
    ap.add_argument("--vk-device", default="0", help="GGML_VK_VISIBLE_DEVICES for llama.cpp's Vulkan backend")
    ap.add_argument("--wgpu-arg", action="append", default=[], help="extra argument for llama-wgpu bench (repeat)")
    ap.add_argument("--llama-bench-arg", action="append", default=[], help="extra argument for llama-bench (repeat)")
    args = ap.parse_args()

    if not Path(args.model).exists():
        sys.exit(f"error: {args.model} not found (scripts/fetch-model.sh)")
    engines = []
    for e in args.engines.split(","):
        if e == "wgpu":
            if not Path(args.llama_wgpu).exists():
                sys.exit(f"error: {args.llama_wgpu} not found (cargo build --release)")
            engines.append(Wgpu(args))
        elif e in ("vulkan", "vulkan-portable", "cpu"):
            engines.append(LlamaCpp(args, e))
        else:
            sys.exit(f"error: unknown engine {e!r} (wgpu, vulkan, vulkan-portable or cpu)")
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")

    load_before = uptime()
    t0 = time.time()
    samples = [{} for _ in engines]
    for rnd in range(args.rounds):
        order = list(range(len(engines)))
        order = order[rnd % len(order):] + order[: rnd % len(order)]
        for i in order:
            for test, s in engines[i].run().items():
                samples[i].setdefault(test, []).extend(s)
        print(f"round {rnd + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    load_after = uptime()

    def mean(xs):
        return statistics.fmean(xs)

    tests = list(dict.fromkeys(t for s in samples for t in s))
    wgpu = next((i for i, e in enumerate(engines) if isinstance(e, Wgpu)), None)
    print(f"model: {Path(args.model).name}; {args.rounds} rounds; "
          f"load average (1/5/15 min) before {' '.join(load_before)}, after {' '.join(load_after)}; "
          f"{time.time() - t0:.0f} s")
    for e in engines:
        extra = f", llama.cpp {e.commit}" if isinstance(e, LlamaCpp) else ""
        print(f"- {e.name} {e.backend}: {e.device}{extra}")
    print()
    print("| engine | backend | test | t/s | llama-wgpu / this | samples (t/s, by round) |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for test in tests:
        for i, e in enumerate(engines):
            xs = samples[i].get(test)
            if not xs:
                continue
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            ratio = "-"
            if wgpu is not None and samples[wgpu].get(test):
                ratio = f"{mean(samples[wgpu][test]) / mean(xs):.2f}"
            each = ", ".join(f"{x:.2f}" for x in xs)
            print(f"| {e.name} | {e.backend} | {test} | {mean(xs):.2f} ± {sd:.2f} | {ratio} | {each} |")


if __name__ == "__main__":
    main()
