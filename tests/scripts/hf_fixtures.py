#!/usr/bin/env python3
"""Tiny Hugging Face checkpoints and PEFT adapters for tests/hf_models.rs, with
transformers' token ids, logits and greedy continuations as the reference.

Re-run from the repository root (needs `pip install torch transformers peft
sentencepiece tokenizers protobuf`; CPU only):

    python3 tests/scripts/hf_fixtures.py

Writes tests/fixtures/hf/:

  gqa-f32/            LlamaForCausalLM, GQA (4 query heads, 2 KV heads), untied
                      embeddings, F32, byte-level BPE tokenizer.json (trained here),
                      config.json rewritten in the transformers 4 layout
                      (rope_theta / rope_scaling at the top level)
  mistral-headdim-f32/ MistralForCausalLM, head_dim 16 with hidden 32 / 4 heads
                      (a head width of its own, as Mistral Nemo's), F32, a BPE
                      tokenizer that splits as Mistral's Tekken does
  tied-bf16/          tied embeddings, BF16, sharded (model.safetensors.index.json),
                      linear RoPE scaling (factor 2), transformers 5 config layout
                      (rope_parameters), the same tokenizer
  spm-f16/            F16, a SentencePiece tokenizer.model only (BPE, byte
                      fallback, trained here with the sentencepiece package)
  lora-a/             PEFT LoRA on gqa-f32: all seven projections, r 4, alpha 8
  lora-b/             PEFT LoRA on gqa-f32: q_proj and v_proj, r 2, rsLoRA
  lora-tied/          PEFT LoRA on tied-bf16 (for the "adapter for another base" test)
  expected.json       per case: prompt, token ids, logits at the last 3 prompt
                      positions, greedy continuation ids, smallest top-1 margin

All reference computations run in float32 (BF16 and F16 checkpoints are
upcast exactly to f32 before the forward pass), so the engine, which computes
in f32 from the same stored values, is compared with the same arithmetic.
Seeds are fixed; VERSIONS.txt records the package versions.
"""

import json
import math
import shutil
from pathlib import Path

import torch
import transformers
import peft
import sentencepiece as spm
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, AutoTokenizer
from transformers import MistralConfig, MistralForCausalLM
from peft import LoraConfig, get_peft_model, PeftModel

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "hf"

TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello, llama. The lighthouse keeper climbed the stairs every night.",
    "A tiny model for tests: it knows nothing, but it computes exactly.",
    "Numbers 123 4567 and symbols #$% appear too; tabs\tand\nnewlines.",
    "user assistant system: what is the capital of France? Paris is.",
] * 20

PROMPTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "<|im_start|>user\nHi there<|im_end|>",
]
N_GREEDY = 6
LAST_POSITIONS = 3
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# Mistral Nemo's tokenizer.json split (Tekken), before a ByteLevel without its own regex.
TEKKEN = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def bpe_tokenizer(tekken=False):
    if tekken:
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(TEKKEN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def spm_tokenizer(dir: Path):
    prefix = dir / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_prefix=str(prefix), vocab_size=320,
        model_type="bpe", byte_fallback=True, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=[],
        num_threads=1, minloglevel=2, remove_extra_whitespaces=False,
        normalization_rule_name="identity",
    )
    (dir / "tokenizer.vocab").unlink()
    return spm.SentencePieceProcessor(model_file=str(dir / "tokenizer.model"))


def config(vocab, **kw):
    base = dict(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, initializer_range=0.5, bos_token_id=0, eos_token_id=1,
        tie_word_embeddings=False,
    )
    base.update(kw)
    return LlamaConfig(**base)


def make_model(cfg, seed, cls=LlamaForCausalLM):
    torch.manual_seed(seed)
    m = cls(cfg).eval()
    # Norm weights are ones at init; random ones exercise them.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return m


@torch.no_grad()
def record(model, ids_list, name, prompts):
    """Logits at every prompt position and a greedy continuation, in f32."""
    model = model.float().eval()
    cases = []
    for prompt, ids in zip(prompts, ids_list):
        x = torch.tensor([ids])
        logits = model(x).logits[0]
        seq = list(ids)
        margins = []
        for _ in range(N_GREEDY):
            out = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(out, 2).values
            margins.append(float(top[0] - top[1]))
            seq.append(int(out.argmax()))
        cases.append({
            "model": name, "prompt": prompt, "ids": ids,
            # The last LAST_POSITIONS positions: enough to see attention over
            # earlier tokens, small enough to commit.
            "logits_from": len(ids) - min(LAST_POSITIONS, len(ids)),
            "logits": [[round(float(v), 5) for v in row] for row in logits[-LAST_POSITIONS:]],
            "greedy": seq[len(ids):], "min_margin": min(margins),
        })
    return cases


def rewrite_v4_layout(dir: Path):
    """config.json as transformers 4 wrote it: RoPE keys at the top level."""
    p = dir / "config.json"
    c = json.loads(p.read_text())
    rp = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = rp.get("rope_theta", 10000.0)
    scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
    c["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    c["transformers_version"] = "4.46.0"
    p.write_text(json.dumps(c, indent=2) + "\n")


def lora(base, targets, r, alpha, seed, rslora=False):
    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                     use_rslora=rslora, lora_dropout=0.0, bias="none")
    return get_peft_model(base, cfg).eval()


def main():
    # Only what this script writes: embeddings.json is hf_embedding_fixture.py's.
    for d in ["gqa-f32", "mistral-headdim-f32", "tied-bf16", "spm-f16", "lora-a", "lora-b", "lora-tied"]:
        shutil.rmtree(OUT / d, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []

    tok = bpe_tokenizer()
    ids = [tok(p)["input_ids"] for p in PROMPTS]

    # GQA, untied, F32, transformers 4 config layout.
    gqa_cfg = config(len(tok), rope_theta=10000.0)
    gqa = make_model(gqa_cfg, 1)
    d = OUT / "gqa-f32"
    gqa.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    rewrite_v4_layout(d)
    cases += record(gqa, ids, "gqa-f32", PROMPTS)

    # LoRA adapters on it: merged in the engine, applied unmerged by peft here.
    base = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    a = lora(base, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 4, 8, 2)
    with torch.no_grad():
        for n, p in a.named_parameters():
            if "lora_" in n:
                p.mul_(0.3)
    a.save_pretrained(OUT / "lora-a", safe_serialization=True)
    cases += record(a, ids, "gqa-f32+lora-a", PROMPTS)
    # --lora-scale 0.5: every adapted layer's scaling halved.
    for m in a.modules():
        if hasattr(m, "scaling") and isinstance(m.scaling, dict):
            m.scaling = {k: v * 0.5 for k, v in m.scaling.items()}
    cases += record(a, ids, "gqa-f32+lora-a*0.5", PROMPTS[:1])

    base = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    b = lora(base, ["q_proj", "v_proj"], 2, 4, 3, rslora=True)
    with torch.no_grad():
        for n, p in b.named_parameters():
            if "lora_" in n:
                p.mul_(0.3)
    b.save_pretrained(OUT / "lora-b", safe_serialization=True)
    # Stacked: a then b, both active (peft's merge of both is the sum of deltas).
    base = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    stacked = PeftModel.from_pretrained(base, OUT / "lora-a", adapter_name="a")
    stacked = stacked.merge_and_unload()
    stacked = PeftModel.from_pretrained(stacked, OUT / "lora-b", adapter_name="b").merge_and_unload()
    cases += record(stacked, ids, "gqa-f32+lora-a+lora-b", PROMPTS[:2])

    # MistralForCausalLM with a head width of its own, as Mistral Nemo and
    # Small 3 have (head_dim 128 with hidden 5120 / 32 heads = 160): here 4
    # heads of 16 over a hidden size of 32 (the GPU's attention kernels take
    # multiples of 8).
    mcfg = MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rms_norm_eps=1e-5, initializer_range=0.5, bos_token_id=0, eos_token_id=1,
        tie_word_embeddings=False, sliding_window=None, rope_theta=1000000.0,
    )
    # Its tokenizer splits as Tekken does (CamelCase in two pieces).
    ttok = bpe_tokenizer(tekken=True)
    tprompts = PROMPTS + ["CamelCase XMLHttpRequest iPhone aÄb ÄÖü élève path/to/file/\n"]
    tids = [ttok(p)["input_ids"] for p in tprompts]
    mcfg.vocab_size = len(ttok)
    mistral = make_model(mcfg, 8, MistralForCausalLM)
    d = OUT / "mistral-headdim-f32"
    mistral.save_pretrained(d, safe_serialization=True)
    ttok.save_pretrained(d)
    assert json.loads((d / "config.json").read_text())["head_dim"] == 16
    cases += record(mistral, tids, "mistral-headdim-f32", tprompts)

    # Tied, BF16, sharded, linear RoPE scaling, transformers 5 layout.
    tied_cfg = config(len(tok), num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0})
    tied = make_model(tied_cfg, 4).to(torch.bfloat16)
    d = OUT / "tied-bf16"
    tied.save_pretrained(d, safe_serialization=True, max_shard_size="20KB")
    tok.save_pretrained(d)
    assert (d / "model.safetensors.index.json").exists(), "expected a sharded checkpoint"
    # Recorded from the saved folder upcast to f32: the in-memory model's
    # `.to(bfloat16)` also rounded its RoPE inverse frequencies.
    cases += record(LlamaForCausalLM.from_pretrained(d, dtype=torch.float32), ids, "tied-bf16", PROMPTS)
    base = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    lt = lora(base, ["q_proj", "k_proj"], 2, 2, 5)
    lt.save_pretrained(OUT / "lora-tied", safe_serialization=True)

    # SentencePiece only, F16.
    d = OUT / "spm-f16"
    d.mkdir()
    sp = spm_tokenizer(d)
    spm_cfg = config(sp.get_piece_size(), num_key_value_heads=4, bos_token_id=1, eos_token_id=2)
    spm_model = make_model(spm_cfg, 6).to(torch.float16)
    spm_model.save_pretrained(d, safe_serialization=True)
    hf_tok = transformers.LlamaTokenizer.from_pretrained(d, legacy=False, add_bos_token=True)
    print("SentencePiece folder loads as", type(hf_tok).__name__)
    spm_prompts = PROMPTS[:2] + ["  leading spaces, and UTF-8: café ☕"]
    spm_ids = []
    for p in spm_prompts:
        want = [1] + sp.encode(p)
        got = hf_tok(p)["input_ids"]
        # transformers' LlamaTokenizer (legacy=False) drops one of several
        # leading spaces; sentencepiece itself, and llama.cpp, keep them all.
        # The model's own library is the reference.
        if not p.startswith("  "):
            assert got == want, f"transformers {got} and sentencepiece {want} disagree on {p!r}"
        spm_ids.append(want)
    hf_tok.save_pretrained(d)
    # A SentencePiece-only folder, as many Llama 2 fine-tunes ship.
    for f in ["tokenizer.json", "chat_template.jinja"]:
        (d / f).unlink(missing_ok=True)
    cases += record(LlamaForCausalLM.from_pretrained(d, dtype=torch.float32), spm_ids, "spm-f16", spm_prompts)

    for c in cases:
        if c["min_margin"] < 1e-2:
            raise SystemExit(f"{c['model']} {c['prompt']!r}: greedy margin {c['min_margin']} too small; change a seed")
    # Adapters name their base as a Hub id would, not by this machine's path.
    for name, base_name in [("lora-a", "gqa-f32"), ("lora-b", "gqa-f32"), ("lora-tied", "tied-bf16")]:
        p = OUT / name / "adapter_config.json"
        c = json.loads(p.read_text())
        c["base_model_name_or_path"] = base_name
        # peft writes a set: sorted, the file is the same on every run.
        c["target_modules"] = sorted(c["target_modules"])
        p.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    (OUT / "expected.json").write_text(json.dumps({"cases": cases}) + "\n")
    for p in OUT.rglob("README.md"):
        p.unlink()
    (OUT / "VERSIONS.txt").write_text(
        f"torch {torch.__version__}\ntransformers {transformers.__version__}\npeft {peft.__version__}\n"
        f"tokenizers {tokenizers.__version__}\nsentencepiece {spm.__version__}\n"
    )
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
