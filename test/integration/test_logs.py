"""The access log (one JSON line per request) and request ids / trace context through the real binary."""
import json
import os
import time

import pytest

import signal
import subprocess

from conftest import KEY_ENV, SluiceProcess, chat_body, policy_yaml, request, sluice_bin

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


def wait_for_line(path, pred, timeout_s=3.0):
    """Whether a line matching pred appears within the timeout (lines are written by a thread of their own)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(pred(l) for l in lines(path, 0, 0)):
            return True
        time.sleep(0.05)
    return False


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
    assert [l["level"] for l in got] == ["info", "error", "warn", "warn", "warn", "info"]
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
    assert wait_for_line(path, lambda l: l["request_id"] == "client-id_42.a")


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


def test_log_levels_filter_stderr_and_the_access_log(workdir, fake, refused_port):
    def flaky_model(name, tag):  # fails its first request with a 503, then answers (one retry)
        return (f"  {name}:\n    kind: openai\n    base_url: http://127.0.0.1:{fake.port}/v1\n"
                f"    model: \"flaky:1,flaky-status:503,header:x-levels={tag}\"\n    api_key_env: {KEY_ENV}\n"
                "    retries: {max: 1, base_ms: 10, max_ms: 50}\n")
    flaky = flaky_model("flaky-quiet", "quiet") + flaky_model("flaky-loud", "loud")
    path = os.path.join(workdir, "levels.yaml")

    def write(level):
        with open(path, "w") as f:
            f.write(policy_yaml(fake.port, refused_port, extra_server=f"log_level: {level}") + flaky +
                    "access_log:\n  path: \"-\"\n  level: warn\n")

    write("error")
    s = SluiceProcess(path, workdir=workdir)
    try:
        assert request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"))[0] == 200
        assert request(s, "POST", "/v1/chat/completions", chat_body("no-such-model"))[0] == 404
        assert request(s, "POST", "/v1/chat/completions", chat_body("fake-500"))[0] == 502
        assert request(s, "POST", "/v1/chat/completions", chat_body("flaky-quiet"))[0] == 200
        s.proc.send_signal(signal.SIGHUP)  # same file: an info line, not written at level error
        time.sleep(1.0)
        write("debug")  # a reload applies its level at once: its own line and the retries show
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "generation 3 serving" not in s.stderr_tail(50000) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert request(s, "POST", "/v1/chat/completions", chat_body("flaky-loud"))[0] == 200
        time.sleep(0.3)
    finally:
        s.stop()
    err = s.stderr_tail(50000)
    assert "generation 2 serving" not in err and "generation 3 serving" in err
    assert "model 'flaky-quiet' failed" not in err
    assert "model 'flaky-loud' failed (upstream_error" in err and "; retrying" in err
    entries = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
    assert [(e["status"], e["level"]) for e in entries] == [(404, "warn"), (502, "error")]


def test_log_level_flag_and_bad_values(workdir, fake, refused_port):
    path = os.path.join(workdir, "levels-bad.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port, extra_server="log_level: loud"))
    p = subprocess.run([sluice_bin(), "validate", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "'log_level' must be debug, info, warn or error, got 'loud'" in p.stderr
    assert "levels-bad.yaml:" in p.stderr
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + "access_log:\n  path: \"-\"\n  level: debug\n")
    p = subprocess.run([sluice_bin(), "validate", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "'level' must be info" in p.stderr
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port))
    p = subprocess.run([sluice_bin(), "serve", "--config", path, "--log-level", "chatty"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "--log-level must be debug, info, warn or error" in p.stderr
