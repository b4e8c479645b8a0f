"""POST /v1/feedback: an outcome for a routed request, checked against the gateway's recent routed requests
and appended to the decision log (the data flywheel)."""
import json
import os

import pytest

from conftest import KEY_ENV, SluiceProcess, assert_openai_error, request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def gateway(workdir, fake):
    assert os.path.exists(MODEL), f"{MODEL} is missing: scripts/setup.sh installs it"
    log = os.path.join(workdir, "feedback-decisions.jsonl")
    path = os.path.join(workdir, "feedback-policy.yaml")
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0, threads: 2}}
models:
  small: {{kind: local, gguf: {json.dumps(MODEL)}, context_tokens: 512, max_sequences: 2}}
  big: {{kind: openai, base_url: "http://127.0.0.1:{fake.port}/v1", model: ok, api_key_env: {KEY_ENV},
         cost_per_mtok: {{input: 1, output: 2}}}}
routes:
  r: {{tiers: [small, big], local_max_tokens: 8, log_text: true}}
decision_log: {{path: {json.dumps(log)}}}
""")
    s = SluiceProcess(path, workdir=workdir)
    yield s, log
    s.stop()


def routed(s):
    body = {"model": "r", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4, "temperature": 0}
    status, headers, raw = request(s, "POST", "/v1/chat/completions", body, timeout=60)
    assert status == 200, raw
    return headers["x-request-id"]


def feedback(s, body):
    status, _, raw = request(s, "POST", "/v1/feedback", body)
    return status, raw


def test_feedback_is_recorded_once_per_routed_request(gateway):
    s, log = gateway
    rid = routed(s)
    status, raw = feedback(s, {"request_id": rid, "score": 0.0, "answer": "no", "label": "wrong polarity"})
    assert status == 200, raw
    assert json.loads(raw) == {"object": "feedback", "request_id": rid, "status": "recorded"}
    status, raw = feedback(s, {"request_id": rid, "score": 1})
    assert_openai_error(status, raw, 409, want_code="conflict")


def test_unknown_ids_and_plain_model_requests_are_not_found(gateway, fake):
    s, _ = gateway
    status, raw = feedback(s, {"request_id": "0123456789abcdef01234567", "score": 1})
    err = assert_openai_error(status, raw, 404, want_code="not_found")
    assert err["param"] == "request_id"
    # A request to a plain model is not routed: it has no decision to give feedback on.
    body = {"model": "big", "messages": [{"role": "user", "content": "hi"}]}
    status, headers, _ = request(s, "POST", "/v1/chat/completions", body)
    assert status == 200
    status, raw = feedback(s, {"request_id": headers["x-request-id"], "score": 1})
    assert_openai_error(status, raw, 404, want_code="not_found")


@pytest.mark.parametrize("body, param", [
    ({"score": 1}, "request_id"),
    ({"request_id": "x"}, None),
    ({"request_id": "x", "score": 1.5}, "score"),
    ({"request_id": "x", "score": "good"}, "score"),
    ({"request_id": 7, "score": 1}, "request_id"),
    ({"request_id": "x", "score": 1, "verdict": "ok"}, "verdict"),
    ('{"request_id": "x", "request_id": "y", "score": 1}', "request_id"),
    ("[1, 2]", None),
    ("{not json", None),
])
def test_malformed_feedback_is_a_400_naming_the_field(gateway, body, param):
    s, _ = gateway
    status, raw = feedback(s, body)
    err = assert_openai_error(status, raw, 400, want_type="invalid_request_error")
    if param is not None:
        assert err["param"] == param, err


def test_feedback_lines_land_in_the_decision_log(gateway, workdir):
    s, log = gateway
    rid = routed(s)
    assert feedback(s, {"request_id": rid, "answer": "the right answer"})[0] == 200
    metrics = request(s, "GET", "/metrics")[2].decode()
    assert 'sluice_feedback_total{result="recorded"}' in metrics
    assert 'sluice_feedback_total{result="duplicate"}' in metrics
    s.stop()  # the log is complete once the process has exited
    lines = [json.loads(l) for l in open(log)]
    fb = [l for l in lines if l.get("type") == "feedback"]
    requests = {l["id"]: l for l in lines if "route" in l}
    assert rid in requests and requests[rid]["query"] == "Say yes."
    mine = [l for l in fb if l["id"] == rid]
    assert len(mine) == 1 and mine[0]["answer"] == "the right answer" and "time" in mine[0]
    first = [l for l in fb if l.get("label") == "wrong polarity"]
    assert len(first) == 1 and first[0]["score"] == 0 and first[0]["answer"] == "no"


def test_feedback_needs_a_decision_log(policy_path, workdir, fake):
    s = SluiceProcess(policy_path, workdir=workdir)
    try:
        status, raw = feedback(s, {"request_id": "abc", "score": 1})
        err = assert_openai_error(status, raw, 501, want_code="not_implemented")
        assert "decision_log" in err["message"]
    finally:
        s.stop()
