"""Retries, circuit breakers and fallbacks through the real binary, against the fake upstream's fault directives
(`flaky:N` fails the first N requests, then answers; `status:N` always fails).
"""
import json
import os
import time

import pytest

from conftest import KEY_ENV, PRICE, SluiceProcess, chat_body, policy_yaml, request

# policy model name -> (upstream model string for the fake, extra policy lines)
EXTRA = {
    "flaky2": ("flaky:2,flaky-status:503", ["retries: {max: 2, base_ms: 10, max_ms: 200}"]),
    "flaky429": ("flaky:1,flaky-status:429,header:retry-after-ms=300", ["retries: {max: 1, base_ms: 10, max_ms: 1000}"]),
    "flaky-too-often": ("flaky:5,flaky-status:500", ["retries: {max: 2, base_ms: 10, max_ms: 100}",
                                                    "circuit_breaker: off"]),
    "drop-retry": ("drop-mid-stream", ["retries: {max: 2, base_ms: 10}"]),
    "always500": ("status:500", ["retries: 0", "circuit_breaker: {failures: 2, open_ms: 1500}"]),
    "down-fallback": ("status:503", ["retries: 0", "circuit_breaker: off", "fallbacks: [gpt-fake]"]),
    "rejected-fallback": ("status:400", ["retries: 0", "fallbacks: [gpt-fake]"]),
}


def extra_models(port):
    price = ", ".join(f"{k}: {v}" for k, v in PRICE.items())
    lines = []
    for name, (upstream, extra) in EXTRA.items():
        lines += [f"  {name}:", "    kind: openai", f"    base_url: http://127.0.0.1:{port}/v1",
                  f'    model: "{upstream}"', f"    api_key_env: {KEY_ENV}", "    timeout_ms: 5000",
                  f"    cost_per_mtok: {{{price}}}"] + ["    " + e for e in extra]
    return "\n".join(lines) + "\n"


# A route whose last tier is the failing model: the tier's fallback serves in its place.
ROUTES = """routes:
  fallback-route:
    tiers: [down-fallback]
"""


@pytest.fixture(scope="module")
def gw(workdir, fake, refused_port):
    path = os.path.join(workdir, "resilience.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + extra_models(fake.port) + ROUTES)
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def upstream_requests(fake, name):
    return [r for r in fake.requests() if (r["json"] or {}).get("model") == EXTRA[name][0]]


def metrics(gw):
    return request(gw, "GET", "/metrics")[2].decode()


def test_failures_before_the_answer_are_retried(gw, fake):
    status, h, body = request(gw, "POST", "/v1/chat/completions", chat_body("flaky2"))
    assert status == 200, body
    assert len(upstream_requests(fake, "flaky2")) == 3
    assert 'sluice_upstream_retries_total{model="flaky2"} 2' in metrics(gw)


def test_a_429_is_retried_after_the_wait_it_asked_for(gw, fake):
    status, _, body = request(gw, "POST", "/v1/chat/completions", chat_body("flaky429"))
    assert status == 200, body
    recs = upstream_requests(fake, "flaky429")
    assert len(recs) == 2
    assert recs[1]["received_at"] - recs[0]["received_at"] >= 0.29


def test_retries_run_out_and_the_error_says_so(gw, fake):
    status, _, body = request(gw, "POST", "/v1/chat/completions", chat_body("flaky-too-often"))
    assert status == 502
    assert "after 3 attempts" in json.loads(body)["error"]["message"]
    assert len(upstream_requests(fake, "flaky-too-often")) == 3


def test_a_stream_that_broke_after_its_first_chunk_is_not_retried(gw, fake):
    status, _, body = request(gw, "POST", "/v1/chat/completions", chat_body("drop-retry", stream=True))
    assert status == 200
    assert b'"error"' in body
    time.sleep(0.3)
    assert len(upstream_requests(fake, "drop-retry")) == 1


def test_the_breaker_opens_fails_fast_and_probes_again(gw, fake):
    for _ in range(2):
        assert request(gw, "POST", "/v1/chat/completions", chat_body("always500"))[0] == 502
    t0 = time.monotonic()
    status, _, body = request(gw, "POST", "/v1/chat/completions", chat_body("always500"))
    assert status == 503
    assert "circuit breaker is open" in json.loads(body)["error"]["message"]
    assert time.monotonic() - t0 < 0.5
    assert len(upstream_requests(fake, "always500")) == 2
    ready = json.loads(request(gw, "GET", "/readyz")[2])
    assert ready == {"status": "ready", "open_circuits": ["always500"]}
    assert 'sluice_circuit_open{model="always500"} 1' in metrics(gw)
    assert "circuit breaker of model 'always500' opened" in gw.stderr_tail(20000)
    time.sleep(1.6)
    assert request(gw, "POST", "/v1/chat/completions", chat_body("always500"))[0] == 502  # the probe
    assert len(upstream_requests(fake, "always500")) == 3
    assert request(gw, "POST", "/v1/chat/completions", chat_body("always500"))[0] == 503  # open again


def test_a_failing_model_falls_back_and_is_priced_as_the_one_that_answered(gw, fake):
    status, h, body = request(gw, "POST", "/v1/chat/completions", chat_body("down-fallback"))
    assert status == 200, body
    assert h["x-sluice-tier"] == "gpt-fake"
    assert h["x-sluice-fallback-from"] == "down-fallback"
    usage = json.loads(body)["usage"]
    expected = (usage["prompt_tokens"] * PRICE["input"] + usage["completion_tokens"] * PRICE["output"]) / 1e6
    assert float(h["x-sluice-cost-usd"]) == pytest.approx(expected, abs=1e-8)
    m = metrics(gw)
    assert 'sluice_fallbacks_total{model="down-fallback",to="gpt-fake"} 1' in m
    assert 'sluice_requests_total{model="gpt-fake",status="200"}' in m
    assert "model 'down-fallback' failed" in gw.stderr_tail(20000)
    # streams fall back too, before their first byte
    status, _, body = request(gw, "POST", "/v1/chat/completions", chat_body("down-fallback", stream=True))
    assert status == 200 and b"[DONE]" in body and b'"error"' not in body


def test_a_route_tier_falls_back_in_its_place(gw, fake):
    status, h, body = request(gw, "POST", "/v1/chat/completions", chat_body("fallback-route"))
    assert status == 200, body
    assert h["x-sluice-route"] == "fallback-route"
    assert h["x-sluice-tier"] == "gpt-fake"
    usage = json.loads(body)["usage"]
    expected = (usage["prompt_tokens"] * PRICE["input"] + usage["completion_tokens"] * PRICE["output"]) / 1e6
    assert float(h["x-sluice-cost-usd"]) == pytest.approx(expected, abs=1e-8)
    assert 'sluice_fallbacks_total{model="down-fallback",to="gpt-fake"}' in metrics(gw)
    status, h, body = request(gw, "POST", "/v1/chat/completions", chat_body("fallback-route", stream=True))
    assert status == 200 and b"[DONE]" in body and b'"error"' not in body


def test_a_rejected_request_does_not_fall_back(gw, fake):
    status, _, _ = request(gw, "POST", "/v1/chat/completions", chat_body("rejected-fallback"))
    assert status == 400
    assert not [r for r in fake.requests() if (r["json"] or {}).get("model") == "ok"]
