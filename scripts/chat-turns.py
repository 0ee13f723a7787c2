#!/usr/bin/env python3
"""A multi-turn conversation through `llama-wgpu serve`, with and without the
prompt cache: what each turn's time to first reply token costs when every
request resends the whole conversation (as OpenAI clients and chat pages do).

Starts two servers (--port 0, loopback, --parallel 1), then holds two copies
of the same conversation side by side, one per server, one request of each per
turn, alternating which goes first: one with llama-server's default `cache_prompt: true`, one
with `cache_prompt: false`. Greedy, so both copies say the same (checked).
Reports per turn the prompt's tokens, the tokens taken from the slot's cache,
and each copy's prompt time (the server's `timings.prompt_ms`). Standard
library only.

    scripts/chat-turns.py --turns 6 --tokens 24 [--json]
"""
import argparse
import http.client
import json
import os
import sys

import serve_local

QUESTIONS = [
    "Tell me about the history of lighthouses.",
    "Why were they built on rocks far from the shore?",
    "How did the keepers live there?",
    "What replaced the keepers?",
    "Which lighthouse is the oldest still working?",
    "Summarise our conversation in two sentences.",
    "What should I read to learn more?",
    "Thank you. One last fact, please.",
]


def post(host, port, path, body):
    c = http.client.HTTPConnection(host, port, timeout=1800)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: status {r.status}: {data[:300]!r}")
    return json.loads(data)


def start(a):
    """A one-slot server: (process, (host, port)) once /health answers."""
    srv, host, port = serve_local.start(a.binary, ["-m", a.model, "--parallel", "1", "-c", str(a.ctx)])
    return srv, (host, port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("LLAMA_WGPU", "target/release/llama-wgpu"))
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=24, help="max_tokens per reply")
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.turns <= len(QUESTIONS):
        sys.exit(f"--turns must be between 1 and {len(QUESTIONS)}")
    # One server per copy (one slot each, requests never overlap): neither
    # copy can find the other's identical conversation in a slot.
    servers = {cached: start(a) for cached in (True, False)}
    try:
        history = {True: [], False: []}
        totals = {True: 0.0, False: 0.0}
        for turn in range(a.turns):
            row = {"turn": turn + 1}
            # Alternate which copy goes first, so neither always runs on a
            # machine warmed (or loaded) by the other.
            order = [True, False] if turn % 2 == 0 else [False, True]
            replies = {}
            for cached in order:
                msgs = history[cached] + [{"role": "user", "content": QUESTIONS[turn]}]
                r = post(*servers[cached][1], "/v1/chat/completions",
                         {"messages": msgs, "max_tokens": a.tokens, "temperature": 0, "cache_prompt": cached})
                reply = r["choices"][0]["message"]["content"]
                history[cached] = msgs + [{"role": "assistant", "content": reply}]
                replies[cached] = reply
                t = r["timings"]
                key = "cached" if cached else "uncached"
                row["prompt_tokens"] = r["usage"]["prompt_tokens"]
                row[f"{key}_cache_n"] = t["cache_n"]
                row[f"{key}_prompt_ms"] = round(t["prompt_ms"], 1)
                totals[cached] += t["prompt_ms"]
            if replies[True] != replies[False]:
                sys.exit(f"turn {turn + 1}: the replies differ:\n{replies[True]!r}\n{replies[False]!r}")
            row["speedup"] = round(row["uncached_prompt_ms"] / max(row["cached_prompt_ms"], 1e-9), 2)
            print(json.dumps(row) if a.json else
                  f"turn {row['turn']}: prompt {row['prompt_tokens']} tokens, {row['cached_cache_n']} from the cache; "
                  f"prompt time {row['cached_prompt_ms']:.0f} ms cached vs {row['uncached_prompt_ms']:.0f} ms "
                  f"uncached ({row['speedup']:.2f}x)", flush=True)
        summary = {"turns": a.turns, "cached_prompt_ms_total": round(totals[True], 1),
                   "uncached_prompt_ms_total": round(totals[False], 1)}
        print(json.dumps(summary) if a.json else
              f"all turns: prompt time {totals[True]:.0f} ms cached vs {totals[False]:.0f} ms uncached "
              f"({totals[False] / max(totals[True], 1e-9):.2f}x)")
    finally:
        for srv, _ in servers.values():
            srv.terminate()
            srv.wait(timeout=120)


if __name__ == "__main__":
    main()
