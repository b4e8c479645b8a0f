"""The local engine's prefix cache through HTTP: answers with the cache equal answers without it (shared,
partly shared and unshared prompts, concurrent requests), cached_tokens in usage on both endpoints streamed
and not, the engine metrics, and a bounded KV cache under a flood of distinct prompts."""
import concurrent.futures
import http.client
import json
import os
import re

import pytest

from conftest import SluiceProcess, request, sse_events

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SYSTEM = ("You label news headlines with one topic word: business, sports, science or world. "
          "Answer with the word only. ") * 8


@pytest.fixture(scope="module")
def server(workdir):
    assert os.path.exists(MODEL), f"{MODEL} is missing: scripts/setup.sh installs it"
    path = os.path.join(workdir, "prefix-policy.yaml")
    m = json.dumps(MODEL)
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0, threads: 2}}
models:
  cached: {{kind: local, gguf: {m}, threads: 1, context_tokens: 512, max_sequences: 8}}
  plain: {{kind: local, gguf: {m}, threads: 1, context_tokens: 512, max_sequences: 8, prefix_cache: false}}
  tight: {{kind: local, gguf: {m}, threads: 1, context_tokens: 512, max_sequences: 2, kv_cache_mib: 8}}
""")
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def chat(s, model, question, system=SYSTEM, stream=False, max_tokens=6):
    body = {"model": model, "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return post(s, "/v1/chat/completions", body, stream)


def complete(s, model, prompt, stream=False, max_tokens=6):
    body = {"model": model, "temperature": 0, "max_tokens": max_tokens, "prompt": prompt}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return post(s, "/v1/completions", body, stream)


def post(s, path, body, stream):
    """Returns (text, usage) of a chat or completions answer, streamed or not."""
    if not stream:
        status, _, raw = request(s, "POST", path, json.dumps(body), timeout=120)
        assert status == 200, raw
        doc = json.loads(raw)
        c = doc["choices"][0]
        return (c["message"]["content"] if "message" in c else c["text"]), doc["usage"]
    conn = http.client.HTTPConnection(s.host, s.port, timeout=120)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    events = sse_events(resp.read().splitlines(keepends=True))
    conn.close()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = ""
    for c in chunks:
        for ch in c["choices"]:
            text += ch["delta"].get("content", "") if "delta" in ch else ch.get("text", "")
    assert chunks[-1]["choices"] == []
    return text, chunks[-1]["usage"]


def cached(usage):
    return usage["prompt_tokens_details"]["cached_tokens"]


QUESTIONS = ["Stocks rally as the central bank holds rates", "Local team wins the cup after extra time",
             "New telescope finds water on a distant planet", "Leaders meet to discuss the border treaty",
             "Oil prices fall for a third week", "Sprinter breaks the national record",
             "Study links sleep to memory in mice", "Elections called after the coalition collapses"]


def test_concurrent_requests_sharing_a_prefix_answer_as_without_the_cache(server):
    expected = [chat(server, "plain", q)[0] for q in QUESTIONS]
    with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as pool:
        got = list(pool.map(lambda q: chat(server, "cached", q), QUESTIONS))
    assert [t for t, _ in got] == expected
    prompt_tokens = got[0][1]["prompt_tokens"]
    assert prompt_tokens > 200
    # The system prompt is computed once; the other requests read it.
    hits = [cached(u) for _, u in got]
    assert sum(1 for h in hits if h >= 160) >= len(QUESTIONS) - 1, hits
    assert all(h < u["prompt_tokens"] for h, (_, u) in zip(hits, got))


def test_partly_shared_and_unshared_prompts_answer_as_without_the_cache(server):
    half = SYSTEM[: len(SYSTEM) // 2] + " Be brief."
    for system, question in [(half, QUESTIONS[0]), ("Answer in French.", QUESTIONS[1]), (SYSTEM, QUESTIONS[2])]:
        assert chat(server, "cached", question, system=system)[0] == chat(server, "plain", question, system=system)[0]


@pytest.mark.parametrize("stream", [False, True])
def test_cached_tokens_in_usage_on_both_endpoints(server, stream):
    q = "Markets slide on trade fears" + (" (stream)" if stream else "")
    text1, u1 = chat(server, "cached", q, stream=stream)
    text2, u2 = chat(server, "cached", q, stream=stream)
    assert text1 == text2
    # The first answer's full blocks (its last, partly filled 16-token block is not shared); never the last prompt
    # token, which gives the first output token.
    assert u2["prompt_tokens"] - 16 < cached(u2) <= u2["prompt_tokens"] - 1, u2
    assert u2["prompt_tokens"] == u1["prompt_tokens"]
    prompt = SYSTEM + "\nHeadline: " + q + "\nTopic:"
    ref = complete(server, "plain", prompt, stream=stream)
    t1, c1 = complete(server, "cached", prompt, stream=stream)
    t2, c2 = complete(server, "cached", prompt, stream=stream)
    assert t1 == t2 == ref[0]
    assert cached(ref[1]) == 0
    assert cached(c2) >= 160, c2


def metric(text, name, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name):line.index("}") + 1]))
            if got == labels:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{sel}}} not in /metrics")


def test_a_flood_of_distinct_prompts_evicts_within_the_budget(server):
    # kv_cache_mib 8 holds 22 blocks (352 tokens) of this model (360 KiB a block): eight distinct 220-token prompts
    # cannot all stay cached.
    sent = 0
    for i in range(8):
        prompt = f"Document {i}: " + " ".join(f"w{i}x{j}" for j in range(45))
        text, usage = complete(server, "tight", prompt, max_tokens=2)
        assert usage["prompt_tokens"] > 200
        assert cached(usage) == 0
        sent += usage["prompt_tokens"]
    status, _, raw = request(server, "GET", "/metrics")
    assert status == 200
    text = raw.decode()
    total = metric(text, "sluice_engine_kv_cache_blocks", model="tight", state="total")
    assert total == 22
    assert metric(text, "sluice_engine_kv_cache_blocks", model="tight", state="used") <= total
    assert metric(text, "sluice_engine_kv_cache_evicted_blocks_total", model="tight") > 0
    assert metric(text, "sluice_engine_prompt_tokens_total", model="tight", source="computed") == sent
    assert metric(text, "sluice_engine_prompt_tokens_total", model="cached", source="cached") > 0
    # Still answers after evicting, the same as the uncached engine.
    prompt = "Document 0: " + " ".join(f"w0x{j}" for j in range(45))
    assert complete(server, "tight", prompt)[0] == complete(server, "plain", prompt)[0]


def test_kv_cache_gauges_are_read_at_scrape_time(server):
    # While a stream runs its blocks show as used: the gateway reads the engine when /metrics is scraped, not
    # only when a request ends (the model "plain" keeps nothing cached, so between requests it uses no block).
    status, _, raw = request(server, "GET", "/metrics")
    assert status == 200
    assert metric(raw.decode(), "sluice_engine_kv_cache_blocks", model="plain", state="total") > 0
    before = metric(raw.decode(), "sluice_engine_kv_cache_blocks", model="plain", state="used")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    body = {"model": "plain", "temperature": 0, "max_tokens": 300, "stream": True,
            "prompt": ", ".join(str(i) for i in range(1, 40)) + ","}  # greedy counting goes on and on
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    for _ in range(10):  # ten events in (each "data:" line has a blank line after it): mid-stream
        assert resp.readline().startswith(b"data: {")
        resp.readline()
    status, _, raw = request(server, "GET", "/metrics")
    during = metric(raw.decode(), "sluice_engine_kv_cache_blocks", model="plain", state="used")
    resp.read()
    conn.close()
    assert during > before
