"""The Anthropic Messages API both ways (issue 11), through the real binary:
- inbound: the unmodified official `anthropic` SDK on POST /v1/messages against the local model, a fake Anthropic
  upstream (test/fakes/fake_anthropic.py), an OpenAI upstream and a cascade route; errors in Anthropic's shape;
- upstream: `kind: anthropic` models reached with the official `openai` SDK, streaming included, with
  prompt-caching usage priced per part, 529 retried, mid-stream errors raised, tool use refused with 501.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import anthropic
import openai
import pytest
import yaml

from conftest import FAKE, KEY_ENV, UPSTREAM_KEY, SluiceProcess, read_line_with_timeout, request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FAKE_ANTHROPIC = os.path.join(HERE, "..", "fakes", "fake_anthropic.py")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
CLAUDE_PRICE = {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 15.0}  # USD per Mtok
CLIENT_KEY = "sk-sluice-anthropic-client-0123456789"
FRAGMENT = "sk-secret-FRAGMENT"


def start_fake(path):
    proc = subprocess.Popen([sys.executable, path, "--port", "0"], stdout=subprocess.PIPE)
    line = read_line_with_timeout(proc.stdout, 10.0) or ""
    m = re.search(r":(\d+)$", line)
    if not m:
        proc.kill()
        pytest.fail(f"fake did not start: {line!r}")
    return proc, int(m.group(1))


def stop_fake(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


class Recorder:
    def __init__(self, port):
        self.port = port

    def _call(self, method):
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/_fake/requests", method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def requests(self):
        return [r for r in self._call("GET") if not r["path"].startswith("/_fake")]

    def reset(self):
        self._call("DELETE")


@pytest.fixture(scope="module")
def fakes():
    a, a_port = start_fake(FAKE_ANTHROPIC)
    o, o_port = start_fake(FAKE)
    yield Recorder(a_port), Recorder(o_port)
    stop_fake(a)
    stop_fake(o)


def claude(upstream, port, **extra):
    m = {"kind": "anthropic", "base_url": f"http://127.0.0.1:{port}/v1", "model": upstream, "api_key_env": KEY_ENV,
         "timeout_ms": 5000, "cost_per_mtok": dict(CLAUDE_PRICE), "retries": 0, "circuit_breaker": "off"}
    m.update(extra)
    return m


def policy(a_port, o_port, keys=None, decision_log=None):
    p = {
        "server": {"listen": "127.0.0.1", "port": 0, "threads": 2, "request_timeout_ms": 30000,
                   "max_body_bytes": 65536},
        "models": {
            "small": {"kind": "local", "gguf": MODEL, "context_tokens": 512, "max_sequences": 4},
            "claude": claude("ok", a_port),
            "claude-cached": claude("usage-cached", a_port),
            "claude-stopseq": claude("stop-sequence", a_port),
            "claude-maxtok": claude("max-tokens", a_port),
            "claude-midstream": claude("error-mid-stream", a_port),
            "claude-drop": claude("drop-mid-stream", a_port),
            "claude-401": claude("status:401", a_port),
            "claude-529": claude("status:529", a_port),
            "claude-529-fb": claude("status:529", a_port, fallbacks=["gpt"]),
            "claude-flaky": claude("flaky:1", a_port, retries={"max": 1, "base_ms": 10, "max_ms": 50}),
            "claude-cache-system": claude("ok", a_port, cache_system_prompt=True),
            "gpt": {"kind": "openai", "base_url": f"http://127.0.0.1:{o_port}/v1", "model": "ok",
                    "api_key_env": KEY_ENV, "cost_per_mtok": {"input": 2.5, "output": 10.0}, "retries": 0,
                    "circuit_breaker": "off"},
        },
        "routes": {
            # The local answer is never confident enough: every request escalates to the Anthropic tier.
            "cascade": {"tiers": ["small", "claude"], "accept": {"min_mean_logprob": -0.0001},
                        "local_max_tokens": 4, "tier_timeout_ms": 60000},
        },
    }
    if keys:
        p["keys"] = keys
    if decision_log:
        p["decision_log"] = {"path": decision_log}
    return p


def DECISIONS(workdir):
    return os.path.join(workdir, "anthropic-decisions.jsonl")


@pytest.fixture(scope="module")
def gw(fakes, workdir):
    assert os.path.exists(MODEL), f"{MODEL} is missing: scripts/setup.sh installs it"
    path = os.path.join(workdir, "anthropic-policy.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(policy(fakes[0].port, fakes[1].port, decision_log=DECISIONS(workdir)), f, sort_keys=False)
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


@pytest.fixture()
def up(fakes):
    fakes[0].reset()
    fakes[1].reset()
    return fakes


@pytest.fixture()
def ac(gw):
    return anthropic.Anthropic(base_url=f"http://{gw.host}:{gw.port}", api_key="sk-client-side", max_retries=0,
                               timeout=60)


@pytest.fixture()
def oc(gw):
    return openai.OpenAI(base_url=f"http://{gw.host}:{gw.port}/v1", api_key="sk-client-side", max_retries=0,
                         timeout=60)


def post_messages(s, body, headers=None):
    h = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    h.update(headers or {})
    status, hdrs, raw = request(s, "POST", "/v1/messages", json.dumps(body), headers=h, timeout=60)
    return status, hdrs, json.loads(raw) if raw else None


def assert_anthropic_error(status, doc, want_status, want_type):
    assert status == want_status, doc
    assert doc["type"] == "error", doc
    assert doc["error"]["type"] == want_type, doc
    assert doc["error"]["message"]


USER = [{"role": "user", "content": "What is the capital of France?"}]


# ---- inbound: the anthropic SDK against the local model ----

def test_sdk_message_from_local_model(ac):
    raw = ac.messages.with_raw_response.create(model="small", max_tokens=12, system="Answer briefly.",
                                               messages=USER, extra_body={"temperature": 0})
    assert raw.headers.get("x-sluice-tier") == "small"
    m = raw.parse()
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.content[0].type == "text" and m.content[0].text.strip()
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 5 and 0 < m.usage.output_tokens <= 12


def test_sdk_max_tokens_cuts_local_answer(ac):
    m = ac.messages.create(model="small", max_tokens=2, messages=[{"role": "user", "content": "Tell me a story."}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_sdk_multi_turn_and_system_blocks_local(ac):
    m = ac.messages.create(model="small", max_tokens=8, extra_body={"temperature": 0},
                           system=[{"type": "text", "text": "You are terse."}],
                           messages=[{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                                     {"role": "user", "content": "Name a colour."}])
    assert m.content[0].text.strip()


def test_sdk_stream_from_local_model(ac):
    with ac.messages.stream(model="small", max_tokens=10, extra_body={"temperature": 0}, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 5 and 0 < final.usage.output_tokens <= 10
    # The same answer as without streaming (greedy).
    whole = ac.messages.create(model="small", max_tokens=10, extra_body={"temperature": 0}, messages=USER)
    assert whole.content[0].text == text


def test_stream_event_sequence(ac):
    events = [e.type for e in ac.messages.create(model="small", max_tokens=4, messages=USER, stream=True)]
    assert events[:2] == ["message_start", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in events
    # ping is not surfaced by the SDK as an event; check it on the wire.
    status, _, raw = request(ac_gw(ac), "POST", "/v1/messages",
                             json.dumps({"model": "small", "max_tokens": 2, "messages": USER, "stream": True}),
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert status == 200
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert "event: ping\ndata: " in text and "event: message_stop\n" in text


def ac_gw(ac):
    class S:
        pass
    s = S()
    s.host, s.port = ac.base_url.host, ac.base_url.port
    return s


def test_stop_sequence_via_local_model(ac):
    full = ac.messages.create(model="small", max_tokens=24, extra_body={"temperature": 0},
                              messages=[{"role": "user", "content": "Count from one to ten in words."}])
    words = full.content[0].text.split()
    assert len(words) >= 3
    m = ac.messages.create(model="small", max_tokens=24, extra_body={"temperature": 0}, stop_sequences=[words[2]],
                           messages=[{"role": "user", "content": "Count from one to ten in words."}])
    assert m.content[0].text == full.content[0].text[: full.content[0].text.index(words[2])]
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == words[2]
    assert full.stop_reason in ("end_turn", "max_tokens") and full.stop_sequence is None
    # A stop sequence that never comes leaves the reason to the model.
    other = ac.messages.create(model="small", max_tokens=24, extra_body={"temperature": 0}, stop_sequences=["zebra!"],
                               messages=[{"role": "user", "content": "Count from one to ten in words."}])
    assert other.content[0].text == full.content[0].text and other.stop_reason == full.stop_reason
    with ac.messages.stream(model="small", max_tokens=24, extra_body={"temperature": 0}, stop_sequences=[words[2]],
                            messages=[{"role": "user", "content": "Count from one to ten in words."}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == words[2]


# ---- inbound: errors in Anthropic's shape ----

def test_max_tokens_is_required(gw):
    status, _, doc = post_messages(gw, {"model": "small", "messages": USER})
    assert_anthropic_error(status, doc, 400, "invalid_request_error")
    assert "max_tokens" in doc["error"]["message"]


def test_sdk_bad_request_and_unknown_model(ac):
    with pytest.raises(anthropic.BadRequestError) as e:
        ac.messages.create(model="small", max_tokens=4, messages=USER, extra_body={"temperature": 1.5})
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.messages.create(model="no-such-model", max_tokens=4, messages=USER)
    assert e.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("body", [
    "{", "[]", '{"model": "small", "max_tokens": 4, "messages": [{"role": "system", "content": "x"}]}',
    '{"model": "small", "max_tokens": 0, "messages": []}',
    '{"model": "small", "model": "claude", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "small", "max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "text"}]}]}',
])
def test_malformed_requests_are_400_in_anthropic_shape(gw, body):
    status, _, raw = request(gw, "POST", "/v1/messages", body, headers={"Content-Type": "application/json"})
    assert_anthropic_error(status, json.loads(raw), 400, "invalid_request_error")


def test_bad_anthropic_version_is_400(gw):
    status, _, doc = post_messages(gw, {"model": "small", "max_tokens": 4, "messages": USER},
                                   headers={"anthropic-version": "latest"})
    assert_anthropic_error(status, doc, 400, "invalid_request_error")
    assert "anthropic-version" in doc["error"]["message"]


def test_tools_are_refused_with_501_naming_the_field(ac, gw, up):
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
    with pytest.raises(anthropic.APIStatusError) as e:
        ac.messages.create(model="claude", max_tokens=8, messages=USER, tools=[tool])
    assert e.value.status_code == 501
    assert e.value.body["type"] == "error" and "'tools'" in e.value.body["error"]["message"]
    status, _, doc = post_messages(gw, {"model": "small", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "1"}]}]})
    assert status == 501 and "messages.0.content.0.type" in doc["error"]["message"]
    assert up[0].requests() == []


def test_body_over_the_limit_is_413_request_too_large(gw):
    big = {"model": "small", "max_tokens": 4, "messages": [{"role": "user", "content": "x" * 70000}]}
    status, _, raw = request(gw, "POST", "/v1/messages", json.dumps(big), headers={"Content-Type": "application/json"})
    assert_anthropic_error(status, json.loads(raw), 413, "request_too_large")


def test_unknown_messages_path_is_404_in_anthropic_shape(gw):
    status, _, raw = request(gw, "POST", "/v1/messages/count_tokens",
                             json.dumps({"model": "small", "messages": USER}),
                             headers={"Content-Type": "application/json"})
    assert_anthropic_error(status, json.loads(raw), 404, "invalid_request_error")


# ---- inbound through an Anthropic upstream, an OpenAI upstream and a route ----

def test_sdk_through_fake_anthropic_upstream(ac, up):
    raw = ac.messages.with_raw_response.create(model="claude", max_tokens=50, system="Be brief.", messages=USER,
                                               stop_sequences=["END"], extra_body={"temperature": 0.5, "top_k": 5})
    assert raw.headers.get("x-sluice-tier") == "claude"
    assert float(raw.headers["x-sluice-cost-usd"]) == pytest.approx((21 * 3.0 + 7 * 15.0) / 1e6, abs=1e-8)
    m = raw.parse()
    assert m.content[0].text == "Hello from the fake Claude" and m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 21 and m.usage.output_tokens == 7
    (r,) = up[0].requests()
    assert r["path"] == "/v1/messages"
    assert r["headers"]["x-api-key"] == UPSTREAM_KEY and "authorization" not in r["headers"]
    assert r["headers"]["anthropic-version"] == "2023-06-01"
    assert r["json"]["system"] == "Be brief." and r["json"]["messages"] == USER
    assert r["json"]["max_tokens"] == 50 and r["json"]["stop_sequences"] == ["END"] and r["json"]["top_k"] == 5


def test_client_cache_marks_reach_the_anthropic_upstream(ac, up):
    m = ac.messages.create(model="claude", max_tokens=5, messages=USER, cache_control={"type": "ephemeral"},
                           system=[{"type": "text", "text": "Stable.", "cache_control": {"type": "ephemeral"}}])
    assert m.content[0].text == "Hello from the fake Claude"
    (r,) = up[0].requests()
    assert r["json"]["system"] == [{"type": "text", "text": "Stable.", "cache_control": {"type": "ephemeral"}}]
    assert r["json"]["cache_control"] == {"type": "ephemeral"}


def test_sdk_stream_through_fake_anthropic_upstream(ac):
    with ac.messages.stream(model="claude-cached", max_tokens=50, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake Claude"
    assert final.usage.input_tokens == 208 and final.usage.output_tokens == 7
    assert final.usage.cache_read_input_tokens == 1536 and final.usage.cache_creation_input_tokens == 256


def test_stop_reasons_through_upstream(ac):
    m = ac.messages.create(model="claude-stopseq", max_tokens=50, messages=USER, stop_sequences=["fake"])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "fake"
    m = ac.messages.create(model="claude-maxtok", max_tokens=5, messages=USER)
    assert m.stop_reason == "max_tokens"
    with ac.messages.stream(model="claude-stopseq", max_tokens=50, messages=USER, stop_sequences=["x"]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "x"


@pytest.mark.parametrize("model", ["claude-midstream", "claude-drop"])
def test_cut_upstream_stream_raises_in_the_anthropic_sdk(ac, model):
    text = ""
    with pytest.raises(anthropic.APIError):
        with ac.messages.stream(model=model, max_tokens=50, messages=USER) as stream:
            for t in stream.text_stream:
                text += t
    assert text == "Hello from"


@pytest.mark.parametrize("model", ["claude-midstream", "claude-drop"])
def test_cut_stream_ends_with_an_in_band_error_event_on_the_wire(gw, model):
    body = {"model": model, "max_tokens": 50, "messages": USER, "stream": True}
    status, headers, raw = request(gw, "POST", "/v1/messages", json.dumps(body),
                                   headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e.strip()]
    names = [e.split("\n")[0] for e in events]
    assert names[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert names[-1] == "event: error" and "event: message_stop" not in names
    err = json.loads(events[-1].split("\n", 1)[1][len("data: "):])
    assert err["type"] == "error" and err["error"]["type"] == "api_error" and err["error"]["message"]


def test_upstream_errors_mapped_for_the_anthropic_sdk(ac):
    with pytest.raises(anthropic.APIStatusError) as e:
        ac.messages.create(model="claude-401", max_tokens=5, messages=USER)
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"
    assert FRAGMENT not in json.dumps(e.value.body)
    with pytest.raises(anthropic.APIStatusError) as e:
        ac.messages.create(model="claude-529", max_tokens=5, messages=USER)
    assert e.value.status_code == 502 and "overloaded" in e.value.body["error"]["message"]


def test_stream_failing_before_its_first_event_is_an_error_status(ac):
    with pytest.raises(anthropic.APIStatusError) as e:
        for _ in ac.messages.create(model="claude-529", max_tokens=5, messages=USER, stream=True):
            pass
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"


def test_529_is_retried(ac, up):
    m = ac.messages.create(model="claude-flaky", max_tokens=5, messages=USER)
    assert m.content[0].text == "Hello from the fake Claude"
    assert len(up[0].requests()) == 2


def test_529_falls_back_to_another_model(ac, up):
    raw = ac.messages.with_raw_response.create(model="claude-529-fb", max_tokens=5, messages=USER)
    assert raw.headers.get("x-sluice-tier") == "gpt" and raw.headers.get("x-sluice-fallback-from") == "claude-529-fb"
    assert raw.parse().content[0].text == "Hello from the fake"
    assert len(up[0].requests()) == 1 and len(up[1].requests()) == 1


def test_messages_served_by_an_openai_upstream(ac, up):
    m = ac.messages.create(model="gpt", max_tokens=20, system="Be brief.", messages=USER)
    assert m.content[0].text == "Hello from the fake" and m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 21 and m.usage.output_tokens == 7
    (r,) = up[1].requests()
    assert r["path"] == "/v1/chat/completions"
    assert r["json"]["messages"] == [{"role": "system", "content": "Be brief."}] + USER
    assert r["json"]["max_tokens"] == 20 and "system" not in r["json"]
    with ac.messages.stream(model="gpt", max_tokens=20, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake" and final.usage.output_tokens == 7


def test_messages_through_a_cascade_route(ac, workdir):
    raw = ac.messages.with_raw_response.create(model="cascade", max_tokens=20, messages=USER)
    assert raw.headers.get("x-sluice-route") == "cascade"
    assert raw.headers.get("x-sluice-tier") == "claude" and raw.headers.get("x-sluice-escalated") == "true"
    assert raw.parse().content[0].text == "Hello from the fake Claude"
    rid = raw.headers["x-request-id"]
    deadline = time.monotonic() + 5
    line = None
    while line is None and time.monotonic() < deadline:
        if os.path.exists(DECISIONS(workdir)):
            with open(DECISIONS(workdir)) as f:
                line = next((json.loads(l) for l in f if rid in l), None)
        time.sleep(0.05)
    assert line is not None and line["endpoint"] == "messages" and line["route"] == "cascade"
    with ac.messages.stream(model="cascade", max_tokens=20, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake Claude" and final.usage.output_tokens == 7


# ---- upstream kind anthropic through the OpenAI SDK ----

def test_openai_sdk_against_anthropic_model(oc, up):
    raw = oc.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}] + USER, max_tokens=30, stop=["END"])
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hello from the fake Claude"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 21 and resp.usage.completion_tokens == 7
    (r,) = up[0].requests()
    assert r["json"]["system"] == "Be brief." and r["json"]["messages"] == USER
    assert r["json"]["stop_sequences"] == ["END"]


def test_openai_sdk_default_max_tokens_and_finish_length(oc, up):
    resp = oc.chat.completions.create(model="claude-maxtok", messages=USER)
    assert resp.choices[0].finish_reason == "length"
    assert up[0].requests()[0]["json"]["max_tokens"] == 4096


def test_legacy_completions_against_anthropic_model(oc, up):
    resp = oc.completions.create(model="claude", prompt="Say hello.", max_tokens=16)
    assert resp.choices[0].text == "Hello from the fake Claude" and resp.usage.completion_tokens == 7
    assert up[0].requests()[0]["json"]["messages"] == [{"role": "user", "content": "Say hello."}]
    text = "".join(c.choices[0].text for c in oc.completions.create(model="claude", prompt="Hi", max_tokens=16,
                                                                  stream=True) if c.choices)
    assert text == "Hello from the fake Claude"


def test_openai_sdk_stream_against_anthropic_model(oc):
    stream = oc.chat.completions.create(model="claude-cached", messages=USER, stream=True,
                                        stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "Hello from the fake Claude" and finish == "stop"
    # OpenAI counts cached tokens inside prompt_tokens; Anthropic outside input_tokens.
    assert usage.prompt_tokens == 208 + 1536 + 256 and usage.prompt_tokens_details.cached_tokens == 1536


def test_openai_sdk_cut_stream_raises(oc):
    with pytest.raises(openai.APIError):
        for _ in oc.chat.completions.create(model="claude-midstream", messages=USER, stream=True):
            pass


def test_openai_sdk_tools_refused_with_501(oc, up):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="claude", messages=USER, tools=tools)
    assert e.value.status_code == 501 and "'tools'" in e.value.body["message"]
    assert up[0].requests() == []


def test_cost_with_cache_reads_and_writes(oc, ac):
    raw = oc.chat.completions.with_raw_response.create(model="claude-cached", messages=USER)
    want = (208 * CLAUDE_PRICE["input"] + 1536 * CLAUDE_PRICE["cached_input"] + 256 * CLAUDE_PRICE["cache_write"]
            + 7 * CLAUDE_PRICE["output"]) / 1e6
    assert float(raw.headers["x-sluice-cost-usd"]) == pytest.approx(want, abs=1e-8)
    u = raw.parse().usage
    assert u.prompt_tokens == 2000 and u.prompt_tokens_details.cached_tokens == 1536
    m = ac.messages.with_raw_response.create(model="claude-cached", max_tokens=5, messages=USER)
    assert float(m.headers["x-sluice-cost-usd"]) == pytest.approx(want, abs=1e-8)
    mu = m.parse().usage
    assert (mu.input_tokens, mu.cache_read_input_tokens, mu.cache_creation_input_tokens) == (208, 1536, 256)


def test_cache_control_marks_a_long_system_prompt(oc, up):
    long_system = "You are a careful assistant. " * 200  # ~5800 characters
    oc.chat.completions.create(model="claude-cache-system",
                               messages=[{"role": "system", "content": long_system}] + USER)
    oc.chat.completions.create(model="claude-cache-system",
                               messages=[{"role": "system", "content": "Short."}] + USER)
    oc.chat.completions.create(model="claude", messages=[{"role": "system", "content": long_system}] + USER)
    marked, short, off = [r["json"]["system"] for r in up[0].requests()]
    assert marked == [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    assert short == "Short." and off == long_system


def test_metrics_count_anthropic_models(gw, ac):
    ac.messages.create(model="claude", max_tokens=5, messages=USER)
    with pytest.raises(anthropic.APIStatusError):
        ac.messages.create(model="claude-529", max_tokens=5, messages=USER)
    status, _, raw = request(gw, "GET", "/metrics")
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert status == 200
    assert re.search(r'sluice_requests_total\{[^}]*model="claude"[^}]*\} [1-9]', text), text[:2000]
    assert re.search(r'sluice_upstream_errors_total\{[^}]*model="claude-529"[^}]*\} [1-9]', text), text[:2000]
    assert re.search(r'sluice_cost_usd_total\{[^}]*model="claude"[^}]*\} [0-9.e-]+', text)


def test_anthropic_sdk_lists_and_retrieves_models(ac, oc):
    page = ac.models.list()
    ids = [m.id for m in page.data]
    assert "claude" in ids and "small" in ids and "cascade" in ids
    assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1]
    m = ac.models.retrieve("claude")
    assert m.id == "claude" and m.type == "model"
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.models.retrieve("no-such-model")
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    assert "claude" in {m.id for m in oc.models.list()}  # the OpenAI SDK still gets OpenAI's shape


# ---- keys: the Anthropic SDK sends x-api-key ----

def test_gateway_keys_with_the_anthropic_sdk(fakes, workdir):
    keys = {"app": {"sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}}
    p = policy(fakes[0].port, fakes[1].port, keys)
    del p["models"]["small"]
    del p["routes"]
    log_path = os.path.join(workdir, "anthropic-access.jsonl")
    p["access_log"] = {"path": log_path}
    path = os.path.join(workdir, "anthropic-keys-policy.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(p, f, sort_keys=False)
    s = SluiceProcess(path, workdir=workdir)
    try:
        base = f"http://{s.host}:{s.port}"
        good = anthropic.Anthropic(base_url=base, api_key=CLIENT_KEY, max_retries=0, timeout=20)
        assert good.messages.create(model="claude", max_tokens=5, messages=USER).content[0].text
        bad = anthropic.Anthropic(base_url=base, api_key="sk-wrong", max_retries=0, timeout=20)
        with pytest.raises(anthropic.AuthenticationError) as e:
            bad.messages.create(model="claude", max_tokens=5, messages=USER)
        assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
        with ac_keyed(base) as streamed:
            assert "".join(streamed.text_stream) == "Hello from the fake Claude"
        deadline, got = time.monotonic() + 5, []
        while len(got) < 3 and time.monotonic() < deadline:
            if os.path.exists(log_path):
                with open(log_path) as f:
                    got = [json.loads(line) for line in f if line.strip()]
            time.sleep(0.05)
        ok, refused, streamed_line = got[:3]
        assert ok["path"] == "/v1/messages" and ok["status"] == 200 and ok["key"] == "app"
        assert ok["model"] == "claude" and ok["tier"] == "claude" and ok["tokens_input"] == 21
        assert ok["tokens_output"] == 7 and ok["cost_usd"] > 0
        assert refused["status"] == 401
        assert streamed_line["stream"] is True and streamed_line["tokens_output"] == 7
    finally:
        s.stop()


def ac_keyed(base):
    client = anthropic.Anthropic(base_url=base, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    return client.messages.stream(model="claude", max_tokens=5, messages=USER)
