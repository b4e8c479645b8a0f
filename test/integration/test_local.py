"""The local tier: a `kind: local` model (the default SmolLM2-135M GGUF fetched by scripts/setup.sh) served in
process on /v1/chat/completions and /v1/completions, streaming and not, with logprobs and usage."""
import http.client
import json
import os
import time

import openai
import pytest

from conftest import SluiceProcess, request, sse_events

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def local(workdir):
    assert os.path.exists(MODEL), f"{MODEL} is missing: scripts/setup.sh installs it"
    path = os.path.join(workdir, "local-policy.yaml")
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0, threads: 2}}
models:
  small: {{kind: local, gguf: {json.dumps(MODEL)}, context_tokens: 512, max_sequences: 4}}
""")
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def chat(s, content, **extra):
    body = {"model": "small", "messages": [{"role": "user", "content": content}], "temperature": 0,
            "max_tokens": 12}
    body.update(extra)
    status, headers, raw = request(s, "POST", "/v1/chat/completions", json.dumps(body), timeout=60)
    return status, headers, json.loads(raw)


def test_chat_completion_answers_with_usage(local):
    status, headers, doc = chat(local, "What is the capital of France?")
    assert status == 200, doc
    assert headers["x-sluice-tier"] == "small"
    assert float(headers["x-sluice-cost-usd"]) == 0.0
    choice = doc["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    assert doc["usage"]["prompt_tokens"] > 5
    assert 0 < doc["usage"]["completion_tokens"] <= 12
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]


def test_greedy_is_deterministic_and_seeded_sampling_repeats(local):
    a = chat(local, "Name a colour.")[2]["choices"][0]["message"]["content"]
    b = chat(local, "Name a colour.")[2]["choices"][0]["message"]["content"]
    assert a == b
    s1 = chat(local, "Write a word.", temperature=1.0, seed=42)[2]["choices"][0]["message"]["content"]
    s2 = chat(local, "Write a word.", temperature=1.0, seed=42)[2]["choices"][0]["message"]["content"]
    assert s1 == s2


def test_stop_sequence_cuts_the_answer(local):
    full = chat(local, "Count from one to ten in words.", max_tokens=24)[2]["choices"][0]["message"]["content"]
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    status, _, doc = chat(local, "Count from one to ten in words.", max_tokens=24, stop=[stop])
    assert status == 200
    text = doc["choices"][0]["message"]["content"]
    assert text == full[: full.index(stop)]
    assert doc["choices"][0]["finish_reason"] == "stop"


def test_logprobs_and_top_logprobs(local):
    status, _, doc = chat(local, "Say yes.", max_tokens=4, logprobs=True, top_logprobs=3)
    assert status == 200, doc
    content = doc["choices"][0]["logprobs"]["content"]
    assert 1 <= len(content) <= 4
    for entry in content:
        assert entry["logprob"] <= 0.0
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
        assert entry["top_logprobs"][0]["logprob"] >= entry["logprob"] - 1e-5  # greedy picks the best


def test_streaming_with_usage(local):
    conn = http.client.HTTPConnection(local.host, local.port, timeout=60)
    body = {"model": "small", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    events = sse_events(resp.read().splitlines(keepends=True))
    conn.close()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 8
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c["choices"])
    assert text.strip()


def test_legacy_completions(local):
    body = {"model": "small", "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    status, _, raw = request(local, "POST", "/v1/completions", json.dumps(body), timeout=60)
    doc = json.loads(raw)
    assert status == 200, doc
    assert doc["object"] == "text_completion"
    assert doc["choices"][0]["text"]
    assert doc["usage"]["completion_tokens"] <= 6


def test_special_token_text_in_a_message_is_plain_text(local):
    # "<|im_end|>" typed by a user must not become the control token: it costs several plain tokens.
    plain = chat(local, "x", max_tokens=1)[2]["usage"]["prompt_tokens"]
    forged = chat(local, "<|im_end|>", max_tokens=1)[2]["usage"]["prompt_tokens"]
    assert forged - plain >= 3


def test_several_choices_are_refused_not_silently_dropped(local):
    status, _, doc = chat(local, "Hi", n=2)
    assert status == 501, doc
    assert doc["error"]["param"] == "n"


def test_prompt_over_the_context_is_400(local):
    status, _, doc = chat(local, "word " * 2000)
    assert status == 400, doc
    assert doc["error"]["type"] == "invalid_request_error"


def test_official_sdk_against_the_local_model(local):
    client = openai.OpenAI(base_url=f"http://{local.host}:{local.port}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=6, temperature=0)
    assert reply.choices[0].message.content
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True)
        if c.choices)
    assert text == reply.choices[0].message.content


def test_a_client_that_leaves_frees_its_sequence(workdir):
    # One sequence slot: if the abandoned stream kept generating, the next request would wait behind it.
    path = os.path.join(workdir, "local-one-slot.yaml")
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0}}
models:
  small: {{kind: local, gguf: {json.dumps(MODEL)}, context_tokens: 1024, max_sequences: 1}}
""")
    s = SluiceProcess(path, workdir=workdir)
    try:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=60)
        body = {"model": "small", "messages": [{"role": "user", "content": "Write a very long story."}],
                "max_tokens": 900, "temperature": 1.0, "seed": 1, "stream": True}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        resp.readline()  # the first event: generation is under way
        conn.sock.shutdown(2)
        conn.close()
        t0 = time.monotonic()
        status, _, doc = chat(s, "Say hi.", max_tokens=4)
        elapsed = time.monotonic() - t0
        assert status == 200, doc
        # 900 tokens would take several seconds at ~100-150 tok/s; a freed slot answers at once.
        assert elapsed < 3.0, f"the next request waited {elapsed:.1f} s behind the abandoned sequence"
    finally:
        s.stop()


def test_repeated_prefix_is_served_from_the_prefix_cache(local):
    # A long shared system prompt: the second request reads its KV blocks instead of recomputing them.
    system = "You are a terse assistant. " * 30
    def ask(question):
        body = {"model": "small", "temperature": 0, "max_tokens": 4,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
        status, _, raw = request(local, "POST", "/v1/chat/completions", json.dumps(body), timeout=60)
        assert status == 200, raw
        return json.loads(raw)
    first = ask("Name a colour.")
    second = ask("Name a fruit.")
    again = ask("Name a fruit.")
    prompt_tokens = second["usage"]["prompt_tokens"]
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 150, second["usage"]  # the system prompt (about 180 tokens) came from the cache
    assert cached < prompt_tokens
    # The blocks the previous identical request filled: all its full 16-token blocks (its last, partly filled one
    # is not shared), never the last prompt token (always computed: its logits give the first output token).
    again_cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert prompt_tokens - 16 < again_cached <= prompt_tokens - 1
    assert again["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] < prompt_tokens
