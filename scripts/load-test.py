#!/usr/bin/env python3
"""Loopback load test of `llama-wgpu serve`: N concurrent streaming clients.

Starts the server (--port 0, loopback), then for each concurrency level runs
that many clients at once, each streaming a completion of exactly --tokens
tokens (ignore_eos), and reports aggregate tokens/s (all tokens / wall time of
the round) and time to first token. Any failed or short request fails the run.
Standard library only.

    scripts/load-test.py --levels 1,4,16 --tokens 64 [--json]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

import serve_local


def stream_completion(host, port, prompt, tokens, results, i):
    t0 = time.perf_counter()
    first = None
    n = 0
    try:
        c = http.client.HTTPConnection(host, port, timeout=1800)
        body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0,
                           "ignore_eos": True, "stream": True})
        c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
        done = False
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                raise RuntimeError(ev["error"]["message"])
            if ev["choices"] and ev["choices"][0]["finish_reason"] is None:
                if first is None:
                    first = time.perf_counter()
                n += 1
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        results[i] = {"ttft_s": first - t0, "tokens": n, "total_s": time.perf_counter() - t0}
    except Exception as e:  # reported by the caller
        results[i] = {"error": str(e)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("LLAMA_WGPU", "target/release/llama-wgpu"))
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=16, help="server slots")
    ap.add_argument("--ctx", type=int, default=256, help="context per slot")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    srv, host, port = serve_local.start(a.binary, ["-m", a.model, "--parallel", str(a.parallel),
                                                   "-c", str(a.ctx), "--queue-size", str(max(levels))])
    try:
        rows = []
        for n in levels:
            results = [None] * n
            # Distinct prompts of the same length: no client is a copy of another.
            threads = [threading.Thread(target=stream_completion,
                                        args=(host, port, f"Story number {i}: once upon a time", a.tokens, results, i))
                       for i in range(n)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            errors = [r["error"] for r in results if "error" in r]
            if errors:
                sys.exit(f"concurrency {n}: {len(errors)} failed: {errors[0]}")
            short = [r["tokens"] for r in results if r["tokens"] < a.tokens]
            if short:
                sys.exit(f"concurrency {n}: short replies {short}")
            ttft = [r["ttft_s"] for r in results]
            total = sum(r["tokens"] for r in results)
            rows.append({"concurrency": n, "tokens_each": a.tokens, "tokens_total": total,
                         "wall_s": round(wall, 2), "aggregate_tokens_per_s": round(total / wall, 2),
                         "ttft_median_s": round(statistics.median(ttft), 2), "ttft_max_s": round(max(ttft), 2)})
            print(json.dumps(rows[-1]) if a.json else
                  f"concurrency {n:>3}: {total} tokens in {wall:.1f} s = {total / wall:.2f} tokens/s aggregate; "
                  f"time to first token median {statistics.median(ttft):.2f} s, max {max(ttft):.2f} s", flush=True)
    finally:
        srv.terminate()
        srv.wait(timeout=120)


if __name__ == "__main__":
    main()
