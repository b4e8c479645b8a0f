"""The access log (one JSON line per request) and request ids / trace context through the real binary."""
import json
import os
import time

import pytest

from conftest import SluiceProcess, chat_body, policy_yaml, request

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def logged(workdir, fake, refused_port):
    log_path = os.path.join(workdir, "logs", "access.jsonl")
    path = os.path.join(workdir, "access-log.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + f"access_log:\n  path: {log_path}\n")
    s = SluiceProcess(path, workdir=workdir)
    yield s, log_path
    s.stop()


def lines(path, n, timeout_s=3.0):
    """The log's JSON lines once there are at least n (the writer is a thread of its own)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(path) as f:
                got = [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            got = []
        if len(got) >= n or time.monotonic() > deadline:
            return got


def test_every_request_gets_one_json_line(logged, fake):
    s, path = logged
    before = len(lines(path, 0, 0))
    request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"), headers={"traceparent": TRACEPARENT})
    request(s, "POST", "/v1/chat/completions", chat_body("fake-500"))
    request(s, "POST", "/v1/chat/completions", chat_body("no-such-model"))
    request(s, "POST", "/v1/chat/completions", "{not json")
    request(s, "GET", "/v1/nowhere?x=secret-query")
    request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake", stream=True))
    got = lines(path, before + 6)[before:]
    assert [l["status"] for l in got] == [200, 502, 404, 400, 404, 200]
    ok, failed, unknown, bad, nowhere, streamed = got
    assert ok["model"] == "gpt-fake" and ok["tier"] == "gpt-fake" and ok["path"] == "/v1/chat/completions"
    assert ok["tokens_input"] == 21 and ok["tokens_output"] == 7 and ok["cost_usd"] > 0
    assert ok["trace_id"] == TRACEPARENT[3:35]
    assert ok["latency_ms"] > 0 and "error" not in ok
    assert failed["error"] == "upstream_error" and "500" in failed["error_message"]
    assert unknown["error"] == "model_not_found"
    assert bad["error"] == "invalid_request"
    assert nowhere["path"] == "/v1/nowhere"  # the query is not logged
    assert streamed["stream"] is True and streamed["tokens_output"] == 7
    for l in got:
        assert l["time"].endswith("Z") and len(l["request_id"]) >= 16


def test_a_client_request_id_is_kept_and_sent_upstream_with_the_trace_context(logged, fake):
    s, path = logged
    status, h, _ = request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"),
                           headers={"X-Request-Id": "client-id_42.a", "traceparent": TRACEPARENT})
    assert status == 200
    assert h["x-request-id"] == "client-id_42.a"
    up = fake.requests()[-1]["headers"]
    assert up["x-request-id"] == "client-id_42.a"
    assert up["traceparent"] == TRACEPARENT
    assert any(l["request_id"] == "client-id_42.a" for l in lines(path, 1))


def test_malformed_ids_and_trace_contexts_are_not_passed_on(logged, fake):
    s, _ = logged
    for bad_id, bad_trace in (("has space", "00-xyz"), ("x" * 129, "00-" + "0" * 32 + "-00f067aa0ba902b7-01"),
                              ("semi;colon", TRACEPARENT.upper())):
        status, h, _ = request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"),
                               headers={"X-Request-Id": bad_id, "traceparent": bad_trace})
        assert status == 200
        assert h["x-request-id"] != bad_id and len(h["x-request-id"]) == 24
        up = fake.requests()[-1]["headers"]
        assert up["x-request-id"] == h["x-request-id"]
        assert "traceparent" not in up


def test_access_log_to_standard_error(workdir, fake, refused_port):
    path = os.path.join(workdir, "access-stderr.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + "access_log:\n  path: \"-\"\n")
    s = SluiceProcess(path, workdir=workdir)
    try:
        assert request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"))[0] == 200
        time.sleep(0.3)
    finally:
        s.stop()
    entries = [json.loads(l) for l in s.stderr_tail(20000).splitlines() if l.startswith("{")]
    assert [e["status"] for e in entries] == [200]
