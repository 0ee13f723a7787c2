"""The official `openai` and `ollama` Python clients against `llama-wgpu serve`.

Usage: server_clients.py BASE_URL API_KEY MODEL. Prints "ok CHECK" per check;
any failure raises (non-zero exit). Generations are short and greedy.
"""
import json
import sys

import ollama
import openai

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]


def ok(name):
    print("ok", name, flush=True)


oa = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
msgs = [{"role": "user", "content": "What is the capital of France?"}]

r = oa.chat.completions.create(model=model, messages=msgs, max_tokens=5, temperature=0)
text = r.choices[0].message.content
assert text, r
assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 5, r.usage
assert r.choices[0].finish_reason in ("stop", "length"), r
ok("openai chat")

parts = []
usage = None
for chunk in oa.chat.completions.create(
    model=model, messages=msgs, max_tokens=5, temperature=0, stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
assert "".join(parts) == text, (parts, text)
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage
ok("openai chat stream")

c = oa.completions.create(model=model, prompt="Once upon a time", max_tokens=4, temperature=0)
assert c.choices[0].text and c.usage.completion_tokens == 4, c
streamed = "".join(
    ch.choices[0].text
    for ch in oa.completions.create(model=model, prompt="Once upon a time", max_tokens=4, temperature=0, stream=True)
    if ch.choices
)
assert streamed == c.choices[0].text, (streamed, c.choices[0].text)
ok("openai completions")

assert [m.id for m in oa.models.list()] == [model]
ok("openai models")

bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

# The client asks for base64 unless told otherwise, and decodes it.
texts = ["The capital of France is Paris.", "Bonjour"]
e = oa.embeddings.create(model=model, input=texts)
vecs = [d.embedding for d in e.data]
assert len(vecs) == 2 and all(len(v) == 576 for v in vecs), [len(v) for v in vecs]
assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vecs)
assert e.usage.prompt_tokens > 2, e.usage
floats = oa.embeddings.create(model=model, input=texts[0], encoding_format="float").data[0].embedding
assert max(abs(a - b) for a, b in zip(floats, vecs[0])) < 1e-4
ok("openai embeddings")

ol = ollama.Client(host=base, headers={"Authorization": "Bearer " + key}, timeout=300)
opts = {"temperature": 0, "num_predict": 5}
r = ol.chat(model=model, messages=msgs, options=opts)
otext = r.message.content
assert otext and r.done and r.eval_count <= 5, r
assert otext == text, (otext, text)  # same greedy prompt through the same template
ok("ollama chat")

parts = [p.message.content for p in ol.chat(model=model, messages=msgs, options=opts, stream=True)]
assert "".join(parts) == otext, parts
ok("ollama chat stream")

g = ol.generate(model=model, prompt="Why is the sky blue?", options={"temperature": 0, "num_predict": 4})
assert g.response and g.done and g.eval_count == 4, g
gs = "".join(p.response for p in ol.generate(model=model, prompt="Why is the sky blue?", options={"temperature": 0, "num_predict": 4}, stream=True))
assert gs == g.response, (gs, g.response)
ok("ollama generate")

names = [m.model for m in ol.list().models]
assert names == [model], names
ok("ollama list")

em = ol.embed(model=model, input=texts)
assert len(em.embeddings) == 2
assert max(abs(a - b) for a, b in zip(em.embeddings[1], vecs[1])) < 1e-4
legacy = ol.embeddings(model=model, prompt=texts[1]).embedding
norm = sum(x * x for x in legacy) ** 0.5
assert max(abs(a / norm - b) for a, b in zip(legacy, vecs[1])) < 1e-4
ok("ollama embed")

p = ol.ps()
assert [m.model for m in p.models] == [model] and p.models[0].size_vram > 0, p
ok("ollama ps")

s = ol.show(model)
assert "im_start" in s.template and s.details.family == "llama", s
ok("ollama show")

tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
# The client gathers streamed tool-call deltas into its own types.
calls, finish = {}, None
for chunk in oa.chat.completions.create(
    model=model, messages=ask, tools=tools, tool_choice="required", max_tokens=48, temperature=0, stream=True
):
    for c in chunk.choices:
        finish = c.finish_reason or finish
        for d in c.delta.tool_calls or []:
            calls.setdefault(d.index, []).append(d)
assert finish == "tool_calls" and len(calls) == 1, (finish, calls)
d = calls[0][0]
assert d.id.startswith("call_") and d.function.name == "get_weather", d
assert isinstance(json.loads(d.function.arguments)["city"], str), d
r = oa.chat.completions.create(
    model=model, temperature=0, max_tokens=32, tools=tools,
    messages=ask + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": d.id, "type": "function", "function": {"name": d.function.name, "arguments": d.function.arguments}}]},
        {"role": "tool", "tool_call_id": d.id, "content": "18 C and sunny"},
    ],
)
m = r.choices[0].message
assert m.content or m.tool_calls, r
ok("openai tools")

r = ol.chat(model=model, messages=ask, tools=tools, options={"temperature": 0, "num_predict": 48})
tc = r.message.tool_calls
assert tc and tc[0].function.name == "get_weather" and isinstance(tc[0].function.arguments["city"], str), r
ok("ollama tools")
