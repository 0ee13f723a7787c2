"""RoPE inverse frequencies and attention factors from transformers' own
initialisation functions (ROPE_INIT_FUNCTIONS), for the scalings the engine
implements: linear, dynamic (NTK-aware), yarn and llama3. tests/rope_scaling.rs
checks the engine's frequencies against them.

Run: python tests/scripts/rope_fixtures.py  (needs transformers, torch)
Writes tests/fixtures/rope/rope_scaling.json.
"""
import json
import pathlib

import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

CASES = [
    # name, head_dim, max_position_embeddings, rope_parameters, seq_len for dynamic
    ("linear", 64, 2048, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, None),
    ("dynamic", 64, 2048, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, 8192),
    ("dynamic_within_context", 64, 2048, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, 1024),
    ("yarn", 128, 16384, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                          "original_max_position_embeddings": 4096}, None),
    ("yarn_beta", 64, 65536, {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 8.0,
                              "original_max_position_embeddings": 8192, "beta_fast": 16.0, "beta_slow": 2.0}, None),
    ("llama3", 128, 131072, {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}, None),
]

out = []
for name, head_dim, max_pos, params, seq_len in CASES:
    cfg = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                      max_position_embeddings=max_pos, rope_parameters=dict(params))
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](cfg, "cpu", seq_len=seq_len)
    out.append({
        "name": name,
        "head_dim": head_dim,
        "max_position_embeddings": max_pos,
        "rope_parameters": params,
        "seq_len": seq_len,
        "inv_freq": [float(x) for x in inv_freq.double()],
        "attention_factor": float(attention_factor),
    })

path = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "rope" / "rope_scaling.json"
path.write_text(json.dumps({"transformers": transformers.__version__, "cases": out}, indent=1) + "\n")
print(f"wrote {path}")
