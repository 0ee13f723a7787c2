#!/usr/bin/env python3
"""Expected chat prompts with tools, rendered by Python jinja2 the way
transformers' apply_chat_template renders them (`tools=` passed to the
template, calls with arguments as objects, tool results as `tool` turns).

Writes tests/fixtures/tokenizer/tools.json: for each template (the chat
templates of Qwen/Qwen2.5-7B-Instruct and NousResearch/Hermes-3-Llama-3.1-8B
(the "Hermes" tool syntax) and of meta-llama/Llama-3.1-8B-Instruct and
Llama-3.2-3B-Instruct (the "Llama 3" one) and of
mistralai/Mistral-Nemo-Instruct-2407 (the "Mistral" one) and of
mistralai/Mistral-Small-3.2-24B-Instruct-2506, Devstral Small 2507 (unsloth's
copy) and mistralai/Ministral-3-14B-Reasoning-2512 (the "Mistral [ARGS]" one), as shipped in their
tokenizer_config.json; llama.cpp keeps copies under models/templates/, which
`scripts/llama-cpp.sh fetch` unpacks), the source, the tools, and each
conversation's expected prompt.

Usage: python tests/scripts/tok_tools_fixture.py [TEMPLATES_DIR]
(default: llama.cpp's models/templates in the sdist scripts/llama-cpp.sh fetches;
needs jinja2)
"""

import glob
import json
import sys
from pathlib import Path

import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tok_chat_fixture import render  # noqa: E402  transformers' environment

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "tokenizer" / "tools.json"

TEMPLATES = {
    "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "hermes3": "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "llama3.2": "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "mistral-nemo": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "mistral-small3.2": "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "devstral": "unsloth-mistral-Devstral-Small-2507.jinja",
    "ministral3": "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
}
# Mistral's template refuses call ids that are not 9 letters and digits;
# llama-wgpu maps others to that shape, so these conversations carry such ids.
NINE_CHAR_IDS = {
    key: {"call_1": "aB3dE5gH7", "call_2": "Zy9xW8vU7"} for key in ("mistral-nemo", "mistral-small3.2", "devstral", "ministral3")
}
# Llama 3's templates take one call per assistant turn.
ONE_CALL_ONLY = {"llama3.1", "llama3.2"}
# strftime_now's date, with its format, which llama-wgpu's test puts back as
# today's in that format.
def DATE(fmt):
    return f"@@DATE {fmt}@@"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now", "description": "The time «now»", "parameters": {"type": "object", "properties": {}}}},
]

# As llama-wgpu's ChatMessage serializes them: content "" for a turn of calls only.
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}},
        {"type": "function", "id": "call_2", "function": {"name": "now", "arguments": {}}},
    ],
}
CONVERSATIONS = {
    "ask": [{"role": "user", "content": "Weather in Paris?"}],
    "system_ask": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
    "results": [
        {"role": "user", "content": "Weather in Paris, and the time?"},
        CALL,
        {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "tool", "content": "12:00", "tool_call_id": "call_2"},
        {"role": "assistant", "content": "18 C and sunny at noon."},
        {"role": "user", "content": "Thanks!"},
    ],
    "one_result": [
        {"role": "user", "content": "Weather in Paris?"},
        {**CALL, "tool_calls": CALL["tool_calls"][:1]},
        {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"},
    ],
}


def main():
    if len(sys.argv) > 1:
        tdir = Path(sys.argv[1])
    else:
        found = sorted(glob.glob(str(ROOT / "target/llama.cpp/llama_cpp_python-*/vendor/llama.cpp/models/templates")))
        if not found:
            sys.exit("no templates: run scripts/llama-cpp.sh fetch, or pass a folder")
        tdir = Path(found[-1])
    fixture = {"jinja2": jinja2.__version__, "tools": TOOLS, "templates": {}}
    for key, file in TEMPLATES.items():
        source = (tdir / file).read_text()
        cases = []
        for name, msgs in CONVERSATIONS.items():
            if name == "results" and key in ONE_CALL_ONLY:
                continue
            if key in NINE_CHAR_IDS:
                msgs = with_ids(msgs, NINE_CHAR_IDS[key])
            # Hermes 3's tool_use template is the one transformers picks when tools are given.
            for tools in (TOOLS,) if key == "hermes3" else (TOOLS, None):
                text = render_tools(source, msgs, tools)
                cases.append({"name": name, "with_tools": tools is not None, "messages": msgs, "expected": text})
        fixture["templates"][key] = {"file": file, "source": source, "cases": cases}
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {sum(len(t['cases']) for t in fixture['templates'].values())} prompts to {OUT}")


def with_ids(msgs, ids):
    """The conversation with its call ids (and results' tool_call_id) renamed."""
    out = json.loads(json.dumps(msgs))
    for m in out:
        for c in m.get("tool_calls", []):
            c["id"] = ids[c["id"]]
        if "tool_call_id" in m:
            m["tool_call_id"] = ids[m["tool_call_id"]]
    return out


def render_tools(source, messages, tools):
    """tok_chat_fixture.render with transformers' `tools` variable."""
    return render(
        source, messages, True, "<|begin_of_text|>", "<|im_end|>", tools=tools, strftime_now=DATE
    )


if __name__ == "__main__":
    main()
