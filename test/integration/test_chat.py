"""Non-streaming chat completions through Sluice to the fake upstream: model rewrite, upstream auth,
response headers and cost, usage pass-through, and every upstream failure mapped to the right error."""
import json
import re
import time

import pytest

from conftest import (PRICE, UPSTREAM_KEY, assert_openai_error, chat_body, request)

USAGE_OK = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def cost_usd(prompt, cached, completion):
    return ((prompt - cached) * PRICE["input"] + cached * PRICE["cached_input"]
            + completion * PRICE["output"]) / 1e6


def post_chat(sluice, body, **kw):
    return request(sluice, "POST", "/v1/chat/completions", body, **kw)


def test_chat_completion_is_forwarded_with_upstream_model_and_key(sluice, fake):
    sent = chat_body("gpt-fake", "Say hello.", temperature=0.2, max_tokens=16)
    status, headers, body = post_chat(sluice, sent)
    assert status == 200, body
    assert headers.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["role"] == "assistant"
    assert doc["choices"][0]["message"]["content"] == "Hello from the fake"
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert doc["usage"]["prompt_tokens"] == USAGE_OK["prompt_tokens"]
    assert doc["usage"]["completion_tokens"] == USAGE_OK["completion_tokens"]
    assert doc["usage"]["total_tokens"] == USAGE_OK["total_tokens"]
    recs = fake.requests()
    assert len(recs) == 1, recs
    up = recs[0]
    assert up["method"] == "POST" and up["path"] == "/v1/chat/completions"
    assert up["json"]["model"] == "ok"  # rewritten to the policy's upstream model name
    assert up["json"]["messages"] == sent["messages"]
    assert up["json"]["temperature"] == 0.2
    assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_response_headers_say_how_it_was_served(sluice):
    status, headers, _ = post_chat(sluice, chat_body("gpt-fake"))
    assert status == 200
    assert headers.get("x-request-id")
    assert headers.get("x-sluice-tier") == "gpt-fake"
    assert headers.get("x-sluice-escalated") == "false"
    cost = headers.get("x-sluice-cost-usd")
    assert cost is not None and DECIMAL_RE.match(cost), cost
    assert float(cost) == pytest.approx(cost_usd(21, 0, 7), rel=0.01)
    _, headers2, _ = post_chat(sluice, chat_body("gpt-fake"))
    assert headers2.get("x-request-id") != headers.get("x-request-id")


def test_cached_usage_passes_through_and_is_priced(sluice):
    status, headers, body = post_chat(sluice, chat_body("fake-cached"))
    assert status == 200, body
    usage = json.loads(body)["usage"]
    assert usage["prompt_tokens"] == 2000
    assert usage["completion_tokens"] == 7
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1536
    assert headers.get("x-sluice-tier") == "fake-cached"
    cost = headers.get("x-sluice-cost-usd")
    assert cost is not None and DECIMAL_RE.match(cost), cost
    assert float(cost) == pytest.approx(cost_usd(2000, 1536, 7), rel=0.01)


def test_chunked_upstream_response_is_read(sluice):
    status, _, body = post_chat(sluice, chat_body("fake-chunked"))
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello from the fake"


def test_unknown_model_is_404_and_not_forwarded(sluice, fake):
    status, _, body = post_chat(sluice, chat_body("no-such-model"))
    assert_openai_error(status, body, 404, "invalid_request_error", "model_not_found")
    assert fake.requests() == []


@pytest.mark.parametrize("model", ["fake-500", "fake-reset", "fake-malformed", "fake-refused", "fake-drop"])
def test_upstream_failure_is_502(sluice, model):
    status, _, body = post_chat(sluice, chat_body(model))
    assert_openai_error(status, body, 502, "api_error", "upstream_error")


def test_upstream_timeout_is_504(sluice):
    t0 = time.monotonic()
    status, _, body = post_chat(sluice, chat_body("fake-timeout"))
    elapsed = time.monotonic() - t0
    assert_openai_error(status, body, 504, None, "upstream_timeout")
    assert elapsed < 2.0, f"took {elapsed:.2f}s for a 300 ms model timeout (fake answers after 3 s)"


def test_upstream_401_body_never_reaches_client(sluice):
    status, headers, body = post_chat(sluice, chat_body("fake-401"))
    err = assert_openai_error(status, body, 502, "api_error")
    everything = body.decode() + json.dumps(headers)
    for secret in ("sk-secret", "FRAGMENT", UPSTREAM_KEY, "Incorrect API key"):
        assert secret not in everything, f"{secret!r} leaked: {everything}"
    assert err["message"]


def test_request_cannot_choose_the_upstream(sluice, fake, refused_port):
    # PITFALLS.md: a client-supplied base URL must never redirect the request (and the provider key).
    evil = f"http://127.0.0.1:{refused_port}/v1"
    body = chat_body("gpt-fake", base_url=evil, api_base=evil)
    status, _, resp = post_chat(sluice, body)
    if status == 200:
        assert len(fake.requests()) == 1  # served by the policy's upstream, not the client's URL
    else:
        assert_openai_error(status, resp, 400, "invalid_request_error")
        assert fake.requests() == []


def test_upstream_429_passes_retry_after_on(sluice, fake):
    # The fake answers 429 with `retry-after: 7` and `retry-after-ms: 6500` (conftest MODELS["fake-429"]).
    status, headers, body = post_chat(sluice, chat_body("fake-429"))
    assert_openai_error(status, body, 429, "api_error", "upstream_rate_limited")
    assert headers.get("retry-after") == "7", headers
    assert headers.get("retry-after-ms") == "6500", headers
    assert len(fake.requests()) == 1


def test_retry_after_is_only_on_rate_limits(sluice):
    status, headers, _ = post_chat(sluice, chat_body("fake-500"))
    assert status == 502
    assert "retry-after" not in headers and "retry-after-ms" not in headers
