"""The flywheel through the real binary: a task model distilled (sluice distill) from a decision log serves as
the first tier of a route, answers when confident and escalates otherwise; a shadow task tier is measured beside
a route without serving."""
import csv
import json
import os
import subprocess

import pytest

from conftest import KEY_ENV, SluiceProcess, request, sluice_bin

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "data", "headlines")


def rows(lo, hi):
    with open(os.path.join(DATA, "train.csv"), encoding="utf-8", newline="") as f:
        return list(csv.reader(f))[lo:hi]


@pytest.fixture(scope="module")
def task_model(workdir):
    """A task model distilled from a decision log of 1,500 frontier answers (gold labels here)."""
    log = os.path.join(workdir, "flywheel-log.jsonl")
    with open(log, "w", encoding="utf-8") as f:
        for i, (query, gold, rid) in enumerate(rows(0, 1500)):
            f.write(json.dumps({"id": f"r{i}", "route": "headlines", "decision": "escalated", "tier": "frontier",
                                "escalated": True, "attempts": [{"tier": "frontier", "kind": "openai",
                                                                 "outcome": "served"}],
                                "query": query, "response": gold}) + "\n")
    out = os.path.join(workdir, "headlines-task.bin")
    r = subprocess.run([sluice_bin(), "distill", "--log", log, "--route", "headlines", "--out", out,
                        "--min-precision", "0.97"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "threshold" in r.stdout
    return out


@pytest.fixture(scope="module")
def gateway(workdir, fake, task_model):
    path = os.path.join(workdir, "flywheel-policy.yaml")
    log = os.path.join(workdir, "flywheel-decisions.jsonl")
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0, threads: 2}}
models:
  tagger: {{kind: task, task_model: {json.dumps(task_model)}, cost_per_request: 0.00001}}
  big: {{kind: openai, base_url: "http://127.0.0.1:{fake.port}/v1", model: ok, api_key_env: {KEY_ENV},
         cost_per_mtok: {{input: 10, output: 30}}}}
routes:
  headlines: {{tiers: [tagger, big], log_text: true}}
  shadowed: {{tiers: [big], shadow: {{tier: tagger, sample: 1.0}}, log_text: true}}
decision_log: {{path: {json.dumps(log)}}}
""")
    s = SluiceProcess(path, workdir=workdir)
    yield s, log
    s.stop()


def ask(s, route, query):
    body = {"model": route, "messages": [{"role": "user", "content": query}], "max_tokens": 4}
    status, headers, raw = request(s, "POST", "/v1/chat/completions", body)
    assert status == 200, raw
    return headers, json.loads(raw)


def test_task_tier_answers_when_confident_and_escalates_otherwise(gateway):
    s, _ = gateway
    served = escalated = 0
    for query, gold, _ in rows(4000, 4060):  # rows the model never saw
        headers, doc = ask(s, "headlines", query)
        if headers["x-sluice-tier"] == "tagger":
            served += 1
            assert headers["x-sluice-escalated"] == "false"
            assert doc["choices"][0]["message"]["content"] in ("up", "down", "neutral", "none")
            assert float(headers["x-sluice-cost-usd"]) == pytest.approx(0.00001)  # cost_per_request
        else:
            escalated += 1
            assert headers["x-sluice-tier"] == "big"
            assert headers["x-sluice-escalation-reason"] == "low_confidence"
            assert doc["choices"][0]["message"]["content"].startswith("Hello")  # the fake upstream's answer
    assert served >= 15 and escalated >= 3, (served, escalated)


def test_shadow_tier_is_measured_but_never_served(gateway):
    s, log = gateway
    before = request(s, "GET", "/metrics")[2].decode()
    for query, _, _ in rows(0, 5):
        headers, doc = ask(s, "shadowed", query)
        assert headers["x-sluice-tier"] == "big"  # the shadow never answers the client
    metrics = request(s, "GET", "/metrics")[2].decode()
    shadow = [l for l in metrics.splitlines() if l.startswith('sluice_route_shadow_total{route="shadowed"')]
    assert sum(float(l.rsplit(" ", 1)[1]) for l in shadow) == 5, shadow
    assert 'sluice_route_shadow_total{route="shadowed",would_answer="true",agrees="false"}' in metrics
    assert 'sluice_route_shadow_would_save_usd_total{route="shadowed"}' in metrics
    assert 'route="shadowed"' not in before


def test_decision_log_feeds_the_next_distillation(gateway, workdir):
    s, log = gateway
    headers, _ = ask(s, "headlines", rows(0, 1)[0][0])
    rid = headers["x-request-id"]
    assert request(s, "POST", "/v1/feedback", {"request_id": rid, "answer": "none"})[0] == 200
    s.stop()
    lines = [json.loads(l) for l in open(log)]
    served_by_task = [l for l in lines if l.get("tier") == "tagger"]
    assert served_by_task and all(l["attempts"][0]["kind"] == "task" for l in served_by_task)
    assert all("score" in l["attempts"][0] for l in served_by_task)
    shadowed = [l for l in lines if l.get("route") == "shadowed"]
    assert shadowed and all(l["shadow"]["tier"] == "tagger" and "agrees" in l["shadow"] for l in shadowed)
    out = os.path.join(workdir, "again.bin")
    r = subprocess.run([sluice_bin(), "distill", "--log", log, "--route", "headlines", "--out", out, "--min-rows", "1"],
                       capture_output=True, text=True, timeout=60)
    # The task tier's own answers are never references; what is left is too little to train on: a clear refusal.
    assert "served by a task tier" in r.stdout + r.stderr, r.stdout + r.stderr


def test_validate_names_a_missing_task_model(workdir):
    path = os.path.join(workdir, "bad-task-policy.yaml")
    with open(path, "w") as f:
        f.write("models:\n  t: {kind: task, task_model: /nonexistent/task.bin}\n")
    r = subprocess.run([sluice_bin(), "validate", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "model 't'" in r.stderr and "/nonexistent/task.bin" in r.stderr, r.stderr
