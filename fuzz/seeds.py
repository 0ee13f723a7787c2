#!/usr/bin/env python3
"""Seed corpora for the tokenizer and chat-template fuzz targets (the GGUF
target's seeds come from `cargo test --test gguf_reader write_fuzz_corpus --
-- --ignored`). Writes fuzz/corpus/<target>/; run from the repository root."""
import json
import os

root = os.path.join("fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# tokenizer_gguf: mode byte, 0x00-separated tokens, 0xFF, text.
spm = ["<unk>", "<s>", "</s>", "<0x41>", "\u2581", "a", "b", "ab", "\u2581a", "\u2581ab", "abc", "c"]
gpt2 = ["a", "b", "\u0120", "ab", "\u0120ab", "<|endoftext|>", "\u00c3", "\u00a9"]
for mode in range(0, 32, 3):
    vocab = spm if mode % 2 == 0 else gpt2
    put("tokenizer_gguf", f"mode{mode}", bytes([mode]) + "\0".join(vocab).encode() + b"\xff" + "ab a <s> abc \u00e9".encode())

# tokenizer_json: small BPE, WordPiece-free shapes the loader accepts.
def bpe(decoder, pre, vocab, merges, added=()):
    return json.dumps({
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, c in added],
        "normalizer": None, "pre_tokenizer": pre, "post_processor": None, "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": decoder is not None and decoder.get("type") == "Sequence",
                  "vocab": vocab, "merges": merges},
    })

bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
put("tokenizer_json", "bytelevel", bpe(bl, bl, {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "<s>": 4}, ["a b"], [(4, "<s>")]))
meta = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
put("tokenizer_json", "metaspace", bpe(meta, None, {"<unk>": 0, "<s>": 1, "<0x41>": 2, "\u2581": 3, "a": 4, "b": 5, "ab": 6}, ["a b"], [(1, "<s>")]))

# chat_template: template, 0x00, user message.
chat = json.load(open(os.path.join("tests", "fixtures", "tokenizer", "chat.json")))
for name in ["smollm2", "llama2", "extras"]:
    put("chat_template", name, chat[name]["template"] + "\0Hello there")
put("chat_template", "tojson", "{{ messages | tojson(indent=2) }}{% for m in messages %}{{ m.content | upper }}{% endfor %}\0x")
put("chat_template", "namespace", "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ ns.n ~ m.role }}{% endfor %}{{ range(3) | list }}\0y")
