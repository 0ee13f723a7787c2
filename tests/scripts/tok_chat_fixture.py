#!/usr/bin/env python3
"""Expected chat prompts, rendered by Python jinja2 the way transformers renders them.

Writes tests/fixtures/tokenizer/chat.json.

SmolLM2: the template is read from the GGUF (`tokenizer.chat_template`) and
rendered with jinja2 in transformers' environment (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, `raise_exception`), with bos_token
and eos_token the texts of the GGUF's BOS/EOS ids. When transformers is
installed, its own `apply_chat_template` on the tokenizer converted from the
same GGUF must agree.

Llama 2: the template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json,
rendered the same way, and required to equal the prompt Meta's reference code
(llama/generation.py, `chat_completion`) builds, written out as text.

Usage: python tests/scripts/tok_chat_fixture.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(needs jinja2 and gguf; transformers optional)
"""

import json
import os
import sys
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "tokenizer"
MODEL = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("LLAMA_WGPU_TEST_MODEL", ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
)

# meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json "chat_template".
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

SYSTEM = {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."}
TWO_TURNS = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4, of course. "},
    {"role": "user", "content": "  And \"3+3\" in French?\n"},
]
UNICODE_TURN = [{"role": "user", "content": "Schreib «Grüße» 🦙\tund <b>fett</b>"}]


# Exercises what HF templates lean on beyond plain output: transformers'
# `tojson` (json.dumps spacing, ensure_ascii=False), Python string methods,
# loop controls, namespace(), whitespace control.
EXTRAS_TEMPLATE = """{%- set ns = namespace(users=0) -%}
{% for message in messages %}
{% if message['role'] == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}
{{ loop.index }}: {{ message | tojson }}
{{ message | tojson(indent=2) }}
  {{- message['content'].strip().upper() -}}
{% if loop.index >= 3 %}{% break %}{% endif %}
{% endfor %}
users={{ ns.users }} {{ messages | length }} {{ bos_token ~ eos_token }}
{{ {'a': [1, 2.5, none, true], 'b': {'c': 'd'}, 'e': []} | tojson }} {{ [{'x': {}}, 'y'] | tojson(indent=1) }}
{% if add_generation_prompt %}GO{% endif %}
"""


def render(template, messages, add_generation_prompt, bos, eos, **extra):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    # transformers' own tojson filter (chat_template_utils.py).
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = tojson
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos, **extra
    )


def meta_llama2(messages, bos="<s>", eos="</s>"):
    """llama/generation.py chat_completion, with BOS/EOS ids written as their text."""
    b_inst, e_inst = "[INST]", "[/INST]"
    b_sys, e_sys = "<<SYS>>\n", "\n<</SYS>>\n\n"
    if messages[0]["role"] == "system":
        messages = [
            {"role": messages[1]["role"], "content": b_sys + messages[0]["content"] + e_sys + messages[1]["content"]}
        ] + messages[2:]
    out = ""
    for prompt, answer in zip(messages[::2], messages[1::2]):
        out += f"{bos}{b_inst} {(prompt['content']).strip()} {e_inst} {(answer['content']).strip()} {eos}"
    out += f"{bos}{b_inst} {(messages[-1]['content']).strip()} {e_inst}"
    return out


def conversations():
    for name, msgs in [
        ("two_turns", TWO_TURNS),
        ("system_two_turns", [SYSTEM] + TWO_TURNS),
        ("one_turn_unicode", UNICODE_TURN),
    ]:
        for gen in (True, False):
            yield name, msgs, gen


def main():
    import gguf

    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: run scripts/fetch-model.sh")
    reader = gguf.GGUFReader(str(MODEL))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    template = field("tokenizer.chat_template")
    tokens = field("tokenizer.ggml.tokens")
    bos, eos = tokens[field("tokenizer.ggml.bos_token_id")], tokens[field("tokenizer.ggml.eos_token_id")]

    hf = None
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        gguf_utils.is_torch_available = lambda: True
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
    except ImportError:
        pass

    smollm2 = []
    for name, msgs, gen in conversations():
        text = render(template, msgs, gen, bos, eos)
        if hf is not None:
            ref = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert text == ref, f"jinja2 and transformers disagree on {name}: {text!r} vs {ref!r}"
        smollm2.append({"name": name, "messages": msgs, "add_generation_prompt": gen, "expected": text})

    llama2 = []
    for name, msgs, gen in conversations():
        text = render(LLAMA2_TEMPLATE, msgs, gen, "<s>", "</s>")
        assert text == meta_llama2(msgs), f"HF template and Meta's format disagree on {name}"
        llama2.append({"name": name, "messages": msgs, "add_generation_prompt": gen, "expected": text})

    extras = []
    for name, msgs, gen in conversations():
        text = render(EXTRAS_TEMPLATE, msgs, gen, "<s>", "</s>")
        extras.append({"name": name, "messages": msgs, "add_generation_prompt": gen, "expected": text})

    fixture = {
        "jinja2": jinja2.__version__,
        "transformers_cross_check": __import__("transformers").__version__ if hf is not None else None,
        "smollm2": {"bos_token": bos, "eos_token": eos, "template": template, "cases": smollm2},
        "llama2": {"bos_token": "<s>", "eos_token": "</s>", "template": LLAMA2_TEMPLATE, "cases": llama2},
        "extras": {"bos_token": "<s>", "eos_token": "</s>", "template": EXTRAS_TEMPLATE, "cases": extras},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "chat.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(smollm2)} SmolLM2 and {len(llama2)} Llama 2 prompts")


if __name__ == "__main__":
    main()
