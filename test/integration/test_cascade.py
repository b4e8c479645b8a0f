"""The cascade through the real binary: routes in the policy (`"model": "<route>"`), the local SmolLM2 tier answering
first into a buffer, judged by validators and the acceptance model (or the min_mean_logprob rule), then served or
escalated to the frontier model, here the HEADLINES frontier stand-in (test/fakes/frontier_standin.py, accuracy
1.0, so an escalated answer is the row's gold label and can be told apart from the local one).

Covered: headers and costs of routed answers (non-streaming and as chunked trailers), streams that never show a
rejected local answer, each escalation reason from a purpose-built route, on_escalation_failure, the official SDK,
route metrics (promtool, and sums that match the headers), the decision log (one line per routed request, text only
with log_text) and the train-cascade flywheel on it, and the refusals of `sluice validate` / `sluice serve`.

HEADLINES rows come from train.csv[4000:5000] (outside what the shipped acceptance model was trained on). Greedy
decoding is deterministic; the rows whose tier the tests pin were picked with acceptance scores far from the shipped
model's threshold (0.34): ACCEPTED_ROWS score > 0.95, ESCALATED_ROWS < 0.02. Retraining
router/models/headlines-accept.bin may move them: re-pick from a decision log written with log_text: true.
"""
import copy
import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import openai
import pytest
import yaml

from conftest import (KEY_ENV, SluiceProcess, assert_openai_error, free_port, read_line_with_timeout, request,
                      sluice_bin, sse_events)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
ACCEPT = os.path.join(ROOT, "router", "models", "headlines-accept.bin")
SHIPPED = os.path.join(ROOT, "policies", "headlines-cascade.yaml")
DATA = os.path.join(ROOT, "data", "headlines")
STANDIN = os.path.join(ROOT, "test", "fakes", "frontier_standin.py")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "sluice-dashboard.json")
LABELS = ("up", "down", "neutral", "none")
REASONS = {"pre_score", "low_confidence", "validator", "local_error", "local_timeout", "upstream_error",
           "upstream_timeout"}
FRONTIER_PRICE = {"input": 10.0, "output": 30.0}  # the shipped policy's frontier prices, USD per million tokens
STANDIN_COMPLETION_TOKENS = 2

with open(os.path.join(DATA, "prompt_prefix.txt"), encoding="utf-8") as f:
    PREFIX = f.read()
with open(os.path.join(DATA, "train.csv"), encoding="utf-8", newline="") as f:
    ROWS = [r for r in csv.reader(f) if r]  # (query "Q: ...\nA:", gold, id)

# See the module docstring: the shipped route serves these locally / escalates them (low_confidence), and the
# local model answers ROW_NOT_A_LABEL with " gold" (validator: labels).
ACCEPTED_ROWS = (4001, 4017, 4032)
ESCALATED_ROWS = (4012, 4023, 4027)
ROW_NOT_A_LABEL = 4003
# Through /v1/chat/completions (the prompt as one user message) the local model mostly starts a sentence and is
# cut (truncated); it answers this row "down", which the shipped route accepts (score 0.62).
CHAT_ACCEPTED_ROW = 4001
FLYWHEEL_ROWS = range(4000, 4012)


def gold(i):
    return ROWS[i][1]


def headline_prompt(i):
    return PREFIX + ROWS[i][0]


def completion_body(model, i, **extra):
    # As a HEADLINES client asks: one short answer, greedy, cut at the newline that would start the next "Q:".
    body = {"model": model, "prompt": headline_prompt(i), "max_tokens": 4, "temperature": 0, "stop": ["\n"]}
    body.update(extra)
    return body


def chat_headline_body(model, i, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": headline_prompt(i)}], "max_tokens": 4,
            "temperature": 0, "stop": ["\n"]}
    body.update(extra)
    return body


def post(s, path, body, timeout=30):
    status, headers, raw = request(s, "POST", path, body, timeout=timeout)
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    return status, headers, doc, raw


def answer_text(doc):
    ch = doc["choices"][0]
    return ch["text"] if "text" in ch else ch["message"]["content"]


def usd(text):
    """A cost header: a plain decimal with 8 places."""
    assert re.fullmatch(r"\d+\.\d{8}", text or ""), f"not a cost header value: {text!r}"
    return float(text)


def frontier_cost(prompt_tokens, completion_tokens):
    return (prompt_tokens * FRONTIER_PRICE["input"] + completion_tokens * FRONTIER_PRICE["output"]) / 1e6


def assert_route_headers(headers, route):
    """The routing headers every routed answer carries, consistent with each other; returns (tier, escalated)."""
    assert re.fullmatch(r"[0-9a-f]{24}", headers.get("x-request-id", "")), headers
    assert headers.get("x-sluice-route") == route, headers
    escalated = headers.get("x-sluice-escalated")
    assert escalated in ("true", "false"), headers
    if escalated == "true":
        assert headers.get("x-sluice-escalation-reason") in REASONS, headers
    else:
        assert "x-sluice-escalation-reason" not in headers, headers
    return headers.get("x-sluice-tier"), escalated == "true"


# ---- processes ---------------------------------------------------------------------------------------------------


class Standin:
    """The HEADLINES frontier stand-in on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, STANDIN, "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = read_line_with_timeout(self.proc.stdout, 20.0) or ""
        m = re.match(r"^frontier_standin: listening on http://127\.0\.0\.1:(\d+)$", line)
        if not m:
            self.stop()
            raise RuntimeError(f"frontier stand-in did not start: {line!r} {self.proc.stderr.read().decode()[-2000:]}")
        self.port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def shipped_policy():
    with open(SHIPPED, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_shipped(path):
    return os.path.normpath(os.path.join(os.path.dirname(SHIPPED), path))


def headlines_route(**overrides):
    """The shipped `headlines` route as it ships (acceptance model path made absolute), plus overrides."""
    route = copy.deepcopy(shipped_policy()["routes"]["headlines"])
    route["accept"]["model"] = resolve_shipped(route["accept"]["model"])
    route.update(overrides)
    return route


def cascade_policy(standin_port, fake_port, refused_port, log_path, routes):
    """A policy with the shipped smollm2 and frontier models (frontier -> the stand-in), three failing upstreams
    (HTTP 500, too slow for its timeout_ms, connection refused), the given routes and a decision log."""
    shipped = shipped_policy()
    smollm2 = dict(shipped["models"]["smollm2"], gguf=MODEL, max_sequences=4)
    frontier = dict(shipped["models"]["frontier"], base_url=f"http://127.0.0.1:{standin_port}/v1",
                    api_key_env=KEY_ENV, timeout_ms=10000)
    assert frontier["cost_per_mtok"] == FRONTIER_PRICE, "the shipped frontier prices changed: update FRONTIER_PRICE"

    def fake(upstream, port, timeout_ms=5000):
        return {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": upstream,
                "api_key_env": KEY_ENV, "timeout_ms": timeout_ms, "cost_per_mtok": {"input": 2.5, "output": 10.0},
                "retries": 0, "circuit_breaker": "off"}  # one attempt each: the route's own escalation is tested

    return {
        "server": {"listen": "127.0.0.1", "port": 0, "threads": 2, "request_timeout_ms": 20000},
        "models": {
            "smollm2": smollm2,
            "frontier": frontier,
            "fake500": fake("status:500", fake_port),
            "fakeslow": fake("slow:3000", fake_port, timeout_ms=300),  # the model's own timeout passes
            "refused": fake("ok", refused_port, timeout_ms=2000),
        },
        "routes": routes,
        "decision_log": {"path": log_path},
    }


def write_policy(workdir, name, policy):
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# generated by {os.path.basename(__file__)}\n")
        yaml.safe_dump(policy, f, sort_keys=False)
    return path


NEVER_CONFIDENT = {"min_mean_logprob": -0.0001}  # a mean token log-prob above -0.0001: (almost) never

# The shipped route's 10 s tier timeout is kept out of these tests: on a loaded machine or a sanitizer build a
# slow local answer would escalate as local_timeout and the expected decisions would not hold (local timeouts
# have tests of their own).
UNHURRIED = {"tier_timeout_ms": 120000}
CASCADE_ROUTES = {
    "headlines": headlines_route(**UNHURRIED),                    # as shipped (log_text off)
    "headlines-text": headlines_route(log_text=True, **UNHURRIED),  # as shipped, logging text
    "labels-only": {"tiers": ["smollm2", "frontier"], "accept": {"labels": list(LABELS)}, "local_max_tokens": 4},
    "lowconf": {"tiers": ["smollm2", "frontier"], "accept": dict(NEVER_CONFIDENT), "local_max_tokens": 4,
                "log_text": True},
    "zebra": {"tiers": ["smollm2", "frontier"], "accept": {"labels": ["zebra"]}, "local_max_tokens": 4},
    "onetoken": {"tiers": ["smollm2", "frontier"], "local_max_tokens": 1},
    "prescore": {"tiers": ["smollm2", "frontier"], "pre_score": {"max_prompt_chars": 10}},
    "upfail": {"tiers": ["fake500", "frontier"]},
    "upslow": {"tiers": ["fakeslow", "frontier"]},
    "slowlocal": {"tiers": ["smollm2", "frontier"], "local_max_tokens": 512, "tier_timeout_ms": 300},
    "fallback": {"tiers": ["smollm2", "fake500"], "accept": dict(NEVER_CONFIDENT), "local_max_tokens": 4,
                 "on_escalation_failure": "serve_local"},
    "fallback-refused": {"tiers": ["smollm2", "refused"], "accept": dict(NEVER_CONFIDENT), "local_max_tokens": 4,
                         "on_escalation_failure": "serve_local"},
    "strict": {"tiers": ["smollm2", "fake500"], "accept": dict(NEVER_CONFIDENT), "local_max_tokens": 4,
               "on_escalation_failure": "error"},
}


@pytest.fixture(scope="module")
def standin():
    s = Standin("--accuracy", "1.0")
    yield s
    s.stop()


class Prometheus:
    """A real Prometheus scraping one gateway every second (for the dashboard's queries)."""

    def __init__(self, workdir, target):
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    f"scrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{target}']}}]\n")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={self.dir}/prometheus.yml",
                                      f"--storage.tsdb.path={self.dir}/data",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400 with {"status": "error", "error": ...} for a bad expression
            return json.loads(e.read())

    def log_tail(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cascade(workdir, standin, fake, refused_port):
    """The gateway most tests share: every route of CASCADE_ROUTES, a decision log, and a Prometheus scraping it.
    Prometheus starts here, not in the dashboard test, because it first scrapes a new target only after ~5 s."""
    assert os.path.exists(MODEL), f"{MODEL} is missing: scripts/setup.sh installs it"
    assert os.path.exists(ACCEPT), f"{ACCEPT} is missing (it is committed; see docs/cascade.md)"
    assert resolve_shipped(shipped_policy()["routes"]["headlines"]["accept"]["model"]) == ACCEPT
    log = os.path.join(workdir, "cascade-decisions.jsonl")
    policy = cascade_policy(standin.port, fake.port, refused_port, log, CASCADE_ROUTES)
    s = SluiceProcess(write_policy(workdir, "cascade-policy.yaml", policy), workdir=workdir)
    s.decision_log = log
    s.prometheus = Prometheus(workdir, f"{s.host}:{s.port}") if shutil.which("prometheus") else None
    yield s
    if s.prometheus:
        s.prometheus.stop()
    s.stop()


# ---- decision log, metrics, raw HTTP -----------------------------------------------------------------------------


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def log_entries(path, ids, timeout_s=5.0):
    """The decision-log lines for these request ids (the writer runs off the request path: poll)."""
    ids = list(ids)
    deadline = time.monotonic() + timeout_s
    while True:
        by_id = {}
        for e in read_log(path):
            by_id.setdefault(e["id"], []).append(e)
        if all(i in by_id for i in ids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    missing = [i for i in ids if i not in by_id]
    assert not missing, f"no decision-log line for {missing} in {path}"
    for i in ids:
        assert len(by_id[i]) == 1, f"{len(by_id[i])} lines for request {i}"
    return [by_id[i][0] for i in ids]


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(s):
    """GET /metrics -> (text, {(name, frozenset(labels)): value})."""
    status, _, body = request(s, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"unparsable metrics line {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return text, samples


def metric(samples, name, **labels):
    """The sample's value (0 when absent: counters start at zero)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name):
    return [dict(lbls) for (n, lbls) in samples if n == name]


class ChunkedResponse:
    def __init__(self, status, headers, chunks, trailers):
        self.status = status
        self.headers = headers    # [(lower-name, value)] in order
        self.chunks = chunks      # the chunk payloads, as framed
        self.trailers = trailers  # [(lower-name, value)] after the last chunk

    @property
    def body(self):
        return b"".join(self.chunks)


def read_chunked_response(f):
    """One response whose body must be chunked, parsed strictly: every chunk-size line, every chunk's CRLF, the
    trailer fields after the last chunk and the blank line that ends the message."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split(b" ")[1])
    headers = []
    while True:
        line = f.readline()
        assert line.endswith(b"\r\n"), f"header line without CRLF: {line!r}"
        if line == b"\r\n":
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip().lower(), v.strip()))
    assert dict(headers).get("transfer-encoding") == "chunked", headers
    assert "content-length" not in dict(headers), headers
    chunks = []
    while True:
        size_line = f.readline()
        assert re.fullmatch(rb"[0-9a-fA-F]+\r\n", size_line), f"bad chunk-size line {size_line!r}"
        size = int(size_line, 16)
        if size == 0:
            break
        data = f.read(size)
        assert len(data) == size, "connection closed inside a chunk"
        assert f.read(2) == b"\r\n", "chunk data not followed by CRLF"
        chunks.append(data)
    trailers = []
    while True:
        line = f.readline()
        assert line.endswith(b"\r\n"), f"trailer section not ended by CRLF: {line!r}"
        if line == b"\r\n":
            break
        k, _, v = line.decode("latin-1").partition(":")
        trailers.append((k.strip().lower(), v.strip()))
    return ChunkedResponse(status, headers, chunks, trailers)


def raw_streams(s, path, bodies, timeout=30):
    """Sends each body as a streaming POST on one keep-alive connection, one after the other, and parses each
    response with read_chunked_response; a framing error in one would break the parse of the next."""
    out = []
    with socket.create_connection((s.host, s.port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        for body in bodies:
            data = json.dumps(dict(body, stream=True)).encode()
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: sluice.test\r\nContent-Type: application/json\r\n"
                         f"TE: trailers\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            out.append(read_chunked_response(f))
        f.close()
    return out


def streamed_text(events):
    """The answer text of SSE data payloads (completions or chat chunks), checking each is a well-formed chunk."""
    assert events and events[-1] == "[DONE]", events[-3:]
    assert "[DONE]" not in events[:-1]
    text, finishes = "", []
    for e in events[:-1]:
        c = json.loads(e)
        assert "error" not in c, c
        assert c["object"] in ("text_completion", "chat.completion.chunk"), c
        assert isinstance(c["id"], str) and c["id"] and isinstance(c["model"], str) and c["model"], c
        for ch in c["choices"]:
            assert ch["index"] == 0
            if ch.get("finish_reason"):
                finishes.append(ch["finish_reason"])
            text += ch["text"] if c["object"] == "text_completion" else (ch["delta"].get("content") or "")
    assert len(finishes) == 1, f"want one finish_reason, got {finishes}"
    return text


def local_answer(s, body, path):
    """What the local model alone answers to the same request (the plain model name is not routed)."""
    status, headers, doc, _ = post(s, path, dict(body, model="smollm2"))
    assert status == 200, doc
    assert "x-sluice-route" not in headers and headers["x-sluice-tier"] == "smollm2"
    return answer_text(doc)


# ---- 1. the shipped route, non-streaming -------------------------------------------------------------------------


def test_shipped_policy_validates():
    p = subprocess.run([sluice_bin(), "validate", SHIPPED], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 routes" in p.stdout, p.stdout


def test_shipped_route_serves_locally_or_escalates_with_consistent_headers(cascade):
    rows = sorted(ACCEPTED_ROWS + ESCALATED_ROWS + (ROW_NOT_A_LABEL,))
    seen = {}
    for i in rows:
        status, h, doc, raw = post(cascade, "/v1/completions", completion_body("headlines", i))
        assert status == 200, raw[:500]
        tier, escalated = assert_route_headers(h, "headlines")
        assert tier in ("smollm2", "frontier"), h
        assert "x-sluice-served-after-failure" not in h
        assert (tier == "smollm2") == (not escalated), h
        cost, baseline = usd(h["x-sluice-cost-usd"]), usd(h["x-sluice-baseline-cost-usd"])
        assert baseline > 0, h
        text = answer_text(doc)
        assert text.strip() in LABELS, (i, text)
        assert doc["object"] == "text_completion" and doc["id"] == "cmpl-" + h["x-request-id"], doc
        assert doc["choices"][0]["logprobs"] is None, "the route's internal log-probs leaked to the client"
        u = doc["usage"]
        # The baseline (the last tier, frontier) prices the prompt and the served answer, counted by the tier
        # that served them.
        assert baseline == pytest.approx(frontier_cost(u["prompt_tokens"], u["completion_tokens"]), abs=1e-8)
        if escalated:
            assert text == gold(i), "the stand-in (accuracy 1.0) answers the gold label"
            assert u["completion_tokens"] == STANDIN_COMPLETION_TOKENS
            assert cost == pytest.approx(baseline, abs=1e-8), "the local attempt is free: cost = the frontier's"
        else:
            assert cost == 0.0, "the local tier's price is 0"
            assert text == local_answer(cascade, completion_body("headlines", i), "/v1/completions")
        seen[i] = (tier, h.get("x-sluice-escalation-reason"))
    for i in ACCEPTED_ROWS:
        assert seen[i] == ("smollm2", None), (i, seen[i])
    for i in ESCALATED_ROWS:
        assert seen[i] == ("frontier", "low_confidence"), (i, seen[i])
    assert seen[ROW_NOT_A_LABEL] == ("frontier", "validator")


def test_request_ids_are_distinct_and_plain_models_are_not_routed(cascade):
    ids = set()
    for _ in range(2):
        status, h, doc, _ = post(cascade, "/v1/completions", completion_body("headlines", ACCEPTED_ROWS[0]))
        assert status == 200
        ids.add(h["x-request-id"])
    assert len(ids) == 2
    status, h, doc, _ = post(cascade, "/v1/completions", completion_body("frontier", ESCALATED_ROWS[0]))
    assert status == 200, doc
    assert "x-sluice-route" not in h and h["x-sluice-tier"] == "frontier" and h["x-sluice-escalated"] == "false"
    assert "x-sluice-baseline-cost-usd" not in h
    assert usd(h["x-sluice-cost-usd"]) > 0


def test_models_list_names_the_routes(cascade):
    status, _, body = request(cascade, "GET", "/v1/models")
    assert status == 200
    data = {m["id"]: m for m in json.loads(body)["data"]}
    for route in CASCADE_ROUTES:
        assert data[route]["owned_by"] == "sluice-route" and data[route]["object"] == "model", data.get(route)
    assert data["smollm2"]["owned_by"] != "sluice-route" and data["frontier"]["owned_by"] != "sluice-route"


# ---- 2. streams --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_routed_streams_match_the_plain_answer_and_carry_cost_trailers(cascade, endpoint):
    path = "/v1/completions" if endpoint == "completions" else "/v1/chat/completions"
    make = completion_body if endpoint == "completions" else chat_headline_body
    rows = ((ACCEPTED_ROWS[0] if endpoint == "completions" else CHAT_ACCEPTED_ROW), ESCALATED_ROWS[0],
            ROW_NOT_A_LABEL)
    bodies = [make("headlines-text", i) for i in rows]
    streams = raw_streams(cascade, path, bodies)  # one keep-alive connection: trailers framed right or it breaks
    for k, (i, body, st) in enumerate(zip(rows, bodies, streams)):
        assert st.status == 200
        h = dict(st.headers)
        tier, escalated = assert_route_headers(h, "headlines-text")
        assert tier == ("smollm2" if k == 0 else "frontier"), (i, h)
        assert h["content-type"].startswith("text/event-stream")
        assert h["trailer"] == "x-sluice-cost-usd, x-sluice-baseline-cost-usd", h
        assert "x-sluice-cost-usd" not in h, "a stream's cost is only known at its end: a trailer"
        trailers = dict(st.trailers)
        assert set(trailers) == {"x-sluice-cost-usd", "x-sluice-baseline-cost-usd"}, st.trailers
        cost, baseline = usd(trailers["x-sluice-cost-usd"]), usd(trailers["x-sluice-baseline-cost-usd"])
        # Each HTTP chunk carries whole SSE events.
        for c in st.chunks:
            assert c.startswith(b"data: ") and c.endswith(b"\n\n"), c
        text = streamed_text(sse_events(st.body.splitlines(keepends=True)))

        status, ph, doc, raw = post(cascade, path, body)
        assert status == 200, raw[:300]
        assert text == answer_text(doc), "the stream and the plain answer differ"
        assert (ph["x-sluice-tier"], ph["x-sluice-escalated"]) == (tier, h["x-sluice-escalated"])
        assert cost == pytest.approx(usd(ph["x-sluice-cost-usd"]), abs=1e-8)
        assert baseline == pytest.approx(usd(ph["x-sluice-baseline-cost-usd"]), abs=1e-8)

        local = local_answer(cascade, body, path)
        if escalated:
            assert tier == "frontier" and text == gold(i)
            assert cost > 0
            # The rejected local answer (buffered, judged, dropped) must not reach the client.
            if local.strip() and local.strip() != text.strip():
                assert local.strip() not in text, (local, text)
        else:
            assert tier == "smollm2" and text == local and cost == 0.0


def test_escalated_stream_shows_none_of_the_rejected_answer(cascade):
    # lowconf rejects every local answer; the local model says " up" to this row, the frontier the gold "down".
    i = ESCALATED_ROWS[0]
    assert gold(i) == "down"
    body = completion_body("lowconf", i)
    local = local_answer(cascade, body, "/v1/completions")
    assert local.strip() == "up"
    (st,) = raw_streams(cascade, "/v1/completions", [body])
    assert st.status == 200
    assert dict(st.headers)["x-sluice-escalation-reason"] == "low_confidence"
    events = sse_events(st.body.splitlines(keepends=True))
    assert streamed_text(events) == "down"
    assert not any("up" in json.loads(e)["choices"][0]["text"] for e in events[:-1] if json.loads(e)["choices"])
    entry, = log_entries(cascade.decision_log, [dict(st.headers)["x-request-id"]])
    assert entry["answer"] == local and entry["stream"] is True
    assert [a["outcome"] for a in entry["attempts"]] == ["rejected", "served"]


def test_client_logprobs_are_trimmed_to_what_it_asked(cascade):
    # The route asks the local tier for the acceptance model's top log-probs; the client sees only its own ask.
    status, h, doc, raw = post(cascade, "/v1/chat/completions",
                               chat_headline_body("headlines", CHAT_ACCEPTED_ROW, logprobs=True, top_logprobs=2))
    assert status == 200, raw[:300]
    assert h["x-sluice-tier"] == "smollm2", h
    content = doc["choices"][0]["logprobs"]["content"]
    assert content and all(len(e["top_logprobs"]) == 2 for e in content), content
    e, = log_entries(cascade.decision_log, [h["x-request-id"]])
    assert len(e["first_top_logprobs"]) > 2, "the acceptance model reads more alternatives than the client asked"


# ---- 3. escalation reasons ---------------------------------------------------------------------------------------


def routed(s, route, path="/v1/completions", body=None, i=ESCALATED_ROWS[0]):
    body = body or (completion_body(route, i) if path == "/v1/completions" else chat_headline_body(route, i))
    status, h, doc, raw = post(s, path, dict(body, model=route))
    return status, h, doc, raw


def escalation(s, route, reason, **kw):
    """Sends one request to the route, checks it escalated for `reason` and was served by the frontier; returns
    (headers, the decision-log line)."""
    status, h, doc, raw = routed(s, route, **kw)
    assert status == 200, raw[:500]
    tier, escalated = assert_route_headers(h, route)
    assert escalated and h["x-sluice-escalation-reason"] == reason, h
    assert tier == "frontier", h
    entry, = log_entries(s.decision_log, [h["x-request-id"]])
    assert entry["decision"] == "escalated" and entry["reason"] == reason and entry["escalated"] is True, entry
    assert entry["tier"] == "frontier" and entry["status"] == 200, entry
    assert entry["attempts"][-1]["tier"] == "frontier" and entry["attempts"][-1]["outcome"] == "served", entry
    return h, entry


def test_low_confidence_from_min_mean_logprob(cascade):
    h, e = escalation(cascade, "lowconf", "low_confidence")
    assert e["validator"] is None
    assert e["threshold"] == pytest.approx(math.exp(-0.0001))
    mean = sum(e["token_logprobs"]) / len(e["token_logprobs"])
    assert e["acceptance_score"] == pytest.approx(math.exp(mean), rel=1e-9)
    assert e["acceptance_score"] < e["threshold"]
    assert [a["tier"] for a in e["attempts"]] == ["smollm2", "frontier"]
    assert e["attempts"][0]["outcome"] == "rejected" and e["attempts"][0]["tokens_output"] > 0


def test_labels_validator(cascade):
    h, e = escalation(cascade, "zebra", "validator")
    assert e["validator"] == "labels" and e["finish_reason"] == "stop"
    assert e["acceptance_score"] is None and e["threshold"] is None  # validators alone: nothing scored
    assert e["attempts"][0]["outcome"] == "rejected"


def test_validators_alone_accept_a_label(cascade):
    status, h, doc, raw = routed(cascade, "labels-only", i=ACCEPTED_ROWS[0])
    assert status == 200, raw[:300]
    assert assert_route_headers(h, "labels-only") == ("smollm2", False)
    e, = log_entries(cascade.decision_log, [h["x-request-id"]])
    assert e["decision"] == "accepted" and e["reason"] is None and e["acceptance_score"] is None
    assert [a["outcome"] for a in e["attempts"]] == ["served"]


def test_truncated_local_answer_escalates(cascade):
    body = {"messages": [{"role": "user", "content": "What is the capital of France? Explain in detail."}],
            "temperature": 0}
    h, e = escalation(cascade, "onetoken", "validator", path="/v1/chat/completions", body=body)
    assert e["validator"] == "truncated" and e["finish_reason"] == "length"
    assert e["attempts"][0]["tokens_output"] == 1 and e["endpoint"] == "chat"


def test_pre_score_skips_the_local_tier(cascade):
    h, e = escalation(cascade, "prescore", "pre_score")
    assert [a["tier"] for a in e["attempts"]] == ["frontier"], "the local tier must not run"
    assert e["pre_score"] is None  # max_prompt_chars alone: no classifier score
    assert "token_logprobs" not in e and "finish_reason" not in e  # no local answer was judged


def test_failing_first_tier_is_upstream_error(cascade):
    h, e = escalation(cascade, "upfail", "upstream_error")
    assert [(a["tier"], a["outcome"]) for a in e["attempts"]] == [("fake500", "failed"), ("frontier", "served")]
    assert "token_logprobs" not in e  # a failed remote tier has no answer to judge


def test_first_tier_past_its_model_timeout_is_upstream_timeout(cascade):
    escalation(cascade, "upslow", "upstream_timeout")


def test_local_tier_timeout(cascade):
    body = {"messages": [{"role": "user", "content": "Write a long story about a dragon who learns to fly."}],
            "temperature": 0}
    t0 = time.monotonic()
    h, e = escalation(cascade, "slowlocal", "local_timeout", path="/v1/chat/completions", body=body)
    assert time.monotonic() - t0 < 3.0, "the local tier ran on past its 300 ms tier timeout"
    a = e["attempts"][0]
    assert a["tier"] == "smollm2" and a["outcome"] == "timed_out", e["attempts"]
    assert 0.25 <= a["seconds"] < 2.0, a


# ---- 4. on_escalation_failure ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["fallback", "fallback-refused"])
def test_serve_local_when_the_last_tier_fails(cascade, route):
    i = ESCALATED_ROWS[0]
    body = completion_body(route, i)
    local = local_answer(cascade, body, "/v1/completions")
    status, h, doc, raw = post(cascade, "/v1/completions", body)
    assert status == 200, raw[:500]
    tier, escalated = assert_route_headers(h, route)
    assert tier == "smollm2" and escalated and h["x-sluice-escalation-reason"] == "low_confidence", h
    assert h.get("x-sluice-served-after-failure") == "true", h
    assert answer_text(doc) == local
    assert usd(h["x-sluice-cost-usd"]) == 0.0 and usd(h["x-sluice-baseline-cost-usd"]) > 0
    e, = log_entries(cascade.decision_log, [h["x-request-id"]])
    assert e["decision"] == "served_after_failure" and e["tier"] == "smollm2" and e["status"] == 200, e
    assert [a["outcome"] for a in e["attempts"]] == ["rejected", "failed"]

    # As a stream: the buffered local answer is replayed, the headers say so, trailers close it.
    (st,) = raw_streams(cascade, "/v1/completions", [body])
    assert st.status == 200 and dict(st.headers).get("x-sluice-served-after-failure") == "true", st.headers
    assert streamed_text(sse_events(st.body.splitlines(keepends=True))) == local
    assert usd(dict(st.trailers)["x-sluice-cost-usd"]) == 0.0


def test_error_when_the_last_tier_fails(cascade):
    status, h, doc, raw = post(cascade, "/v1/completions", completion_body("strict", ESCALATED_ROWS[0]))
    assert_openai_error(status, raw, 502)
    assert h["x-sluice-route"] == "strict" and h["x-sluice-escalated"] == "true", h
    assert "x-sluice-served-after-failure" not in h and "x-sluice-cost-usd" not in h
    e, = log_entries(cascade.decision_log, [h["x-request-id"]])
    assert e["decision"] == "failed" and e["tier"] is None and e["status"] == 502, e
    assert [a["outcome"] for a in e["attempts"]] == ["rejected", "failed"]

    # A stream fails before its first byte: still a proper status, not a 200 with an in-band error.
    status, h, doc, raw = post(cascade, "/v1/completions", completion_body("strict", ESCALATED_ROWS[0], stream=True))
    assert_openai_error(status, raw, 502)


# ---- 5. the official SDK -----------------------------------------------------------------------------------------


def test_official_sdk_against_a_route(cascade):
    client = openai.OpenAI(base_url=f"http://{cascade.host}:{cascade.port}/v1", api_key="sk-client-side",
                           max_retries=0, timeout=30)
    assert "headlines" in {m.id for m in client.models.list()}
    for i, want_tier in ((ACCEPTED_ROWS[1], "smollm2"), (ESCALATED_ROWS[1], "frontier")):
        kw = dict(model="headlines", prompt=headline_prompt(i), max_tokens=4, temperature=0, stop=["\n"])
        raw = client.completions.with_raw_response.create(**kw)
        assert raw.headers["x-sluice-route"] == "headlines"
        assert raw.headers["x-sluice-tier"] == want_tier
        usd(raw.headers["x-sluice-cost-usd"])
        plain = raw.parse()
        assert plain.choices[0].text.strip() in LABELS and plain.choices[0].finish_reason == "stop"
        streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
        assert streamed == plain.choices[0].text
    reply = client.chat.completions.create(model="headlines", messages=[{"role": "user",
                                           "content": headline_prompt(ESCALATED_ROWS[1])}], max_tokens=4,
                                           temperature=0, stop=["\n"])
    assert reply.choices[0].message.content.strip() in LABELS


# ---- 6. metrics --------------------------------------------------------------------------------------------------


def test_route_metrics_add_up_with_the_headers(cascade):
    _, before = scrape(cascade)
    costs = baselines = 0.0
    served, ids = {}, []
    for i in ACCEPTED_ROWS[:2] + ESCALATED_ROWS[:2]:
        status, h, _, _ = post(cascade, "/v1/completions", completion_body("headlines", i))
        assert status == 200
        ids.append(h["x-request-id"])
        costs += usd(h["x-sluice-cost-usd"])
        baselines += usd(h["x-sluice-baseline-cost-usd"])
        key = (h["x-sluice-tier"], h["x-sluice-escalated"])
        served[key] = served.get(key, 0) + 1
    for st in raw_streams(cascade, "/v1/completions", [completion_body("headlines", ESCALATED_ROWS[2])]):
        t = dict(st.trailers)
        costs += usd(t["x-sluice-cost-usd"])
        baselines += usd(t["x-sluice-baseline-cost-usd"])
        key = (dict(st.headers)["x-sluice-tier"], dict(st.headers)["x-sluice-escalated"])
        served[key] = served.get(key, 0) + 1
        ids.append(dict(st.headers)["x-request-id"])
    status, h, _, _ = post(cascade, "/v1/completions", completion_body("strict", ESCALATED_ROWS[0]))
    assert status == 502
    ids.append(h["x-request-id"])
    text, after = scrape(cascade)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    n = sum(served.values())
    assert served.get(("smollm2", "false"), 0) >= 1 and served.get(("frontier", "true"), 0) >= 1, served
    for (tier, esc), k in served.items():
        assert delta("sluice_route_requests_total", route="headlines", tier=tier, escalated=esc) == k
    assert delta("sluice_route_escalations_total", route="headlines", reason="low_confidence") == \
        served.get(("frontier", "true"), 0)
    # Cost headers have 8 decimals; the counters do not round.
    assert delta("sluice_route_cost_usd_total", route="headlines") == pytest.approx(costs, abs=n * 1e-8)
    assert delta("sluice_route_baseline_cost_usd_total", route="headlines") == pytest.approx(baselines, abs=n * 1e-8)
    assert delta("sluice_cost_usd_total", model="frontier") == pytest.approx(costs, abs=n * 1e-8)
    assert delta("sluice_requests_total", model="frontier", status="200") == served[("frontier", "true")]
    assert delta("sluice_requests_total", model="smollm2", status="200") == served[("smollm2", "false")]
    # Per-attempt tokens, rejected local attempts included (the decision log lists the attempts).
    local = [a for e in log_entries(cascade.decision_log, ids) for a in e["attempts"] if a["tier"] == "smollm2"]
    assert len(local) == n + 1 and any(a["outcome"] == "rejected" for a in local)
    assert delta("sluice_tokens_total", model="smollm2", type="output") == sum(a["tokens_output"] for a in local)
    assert delta("sluice_tokens_total", model="smollm2", type="cached_input") == sum(a["tokens_cached"] for a in local)
    assert delta("sluice_tokens_total", model="smollm2", type="input") == \
        sum(a["tokens_input"] - a["tokens_cached"] for a in local)
    assert delta("sluice_route_acceptance_score_count", route="headlines") == n
    assert delta("sluice_route_decision_seconds_count", route="headlines") == n
    assert delta("sluice_route_time_to_first_token_seconds_count", route="headlines", escalated="true") == \
        served[("frontier", "true")]
    assert delta("sluice_decision_log_lines_total", result="queued") == n + 1
    # The failed route: tier "none", escalated, its (free) local attempt charged, no baseline.
    assert delta("sluice_route_requests_total", route="strict", tier="none", escalated="true") == 1
    assert delta("sluice_route_escalations_total", route="strict", reason="low_confidence") == 1
    assert delta("sluice_route_baseline_cost_usd_total", route="strict") == 0

    # Label sets, over everything this module sent.
    for name, keys in {"sluice_route_requests_total": {"route", "tier", "escalated"},
                       "sluice_route_escalations_total": {"route", "reason"},
                       "sluice_route_cost_usd_total": {"route"},
                       "sluice_route_baseline_cost_usd_total": {"route"},
                       "sluice_route_acceptance_score_bucket": {"route", "le"},
                       "sluice_route_decision_seconds_bucket": {"route", "le"},
                       "sluice_route_time_to_first_token_seconds_bucket": {"route", "escalated", "le"},
                       "sluice_decision_log_lines_total": {"result"}}.items():
        got = series(after, name)
        assert got, f"{name} missing"
        assert all(set(l) == keys for l in got), (name, got[:3])
    for l in series(after, "sluice_route_requests_total"):
        assert l["route"] in CASCADE_ROUTES and l["escalated"] in ("true", "false"), l
        assert l["tier"] in ("none", "smollm2", "frontier", "fake500", "refused", "fakeslow"), l
    for l in series(after, "sluice_route_escalations_total"):
        assert l["reason"] in REASONS, l
    for l in series(after, "sluice_route_acceptance_score_bucket"):
        assert l["le"] in ("0.05", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "0.95", "1", "+Inf")

    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus; scripts/setup.sh installs it)"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode() + "\n--- metrics ---\n" + text[:4000]


def dashboard_queries():
    """Every PromQL expression of the Grafana dashboard: (panel title, expr)."""
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    panels = []
    for p in dash["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))  # a collapsed row keeps its panels inside it
    return dash, [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def test_grafana_dashboard_queries_return_route_data(cascade):
    # Prometheus scrapes this gateway once a second; every dashboard expression must evaluate, and the route panels
    # (the savings panel first) must have data once routed requests were served locally and escalated.
    prom = cascade.prometheus
    assert prom, "prometheus is required (Debian package prometheus, which also installs promtool)"
    dash, queries = dashboard_queries()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["route"]["definition"] == "label_values(sluice_route_requests_total, route)"
    assert variables["instance"]["definition"] == "label_values(sluice_build_info, instance)"
    assert variables["model"]["definition"] == "label_values(sluice_requests_total, model)"
    for title, expr in queries:  # every selector of a Sluice metric follows the instance filter
        for selector in re.findall(r"sluice_[a-z_]+(?:\{[^}]*\})?", expr):
            assert 'instance=~"$instance"' in selector, (title, selector)

    def wait_for_a_scrape():
        """Until Prometheus holds what the gateway counts now."""
        want = sum(v for (n, l), v in scrape(cascade)[1].items()
                   if n == "sluice_route_requests_total" and ("route", "headlines") in l)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                doc = prom.query('sum(sluice_route_requests_total{route="headlines"})')
                if doc.get("status") == "success" and doc["data"]["result"] and \
                        float(doc["data"]["result"][0]["value"][1]) == want:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.2)
        pytest.fail("Prometheus did not scrape the gateway: " + prom.log_tail())

    # Both kinds before one scrape (a series must be in two scrapes to have a rate), and both again before a later
    # one.
    for _ in range(2):
        for i, tier in ((ACCEPTED_ROWS[0], "smollm2"), (ESCALATED_ROWS[0], "frontier")):
            status, h, _, _ = post(cascade, "/v1/completions", completion_body("headlines", i))
            assert status == 200 and h["x-sluice-tier"] == tier, h
        wait_for_a_scrape()

    for title, expr in queries:
        concrete = (expr.replace("$route", "headlines").replace("$instance", ".*").replace("$model", ".*")
                    .replace("$__rate_interval", "1m").replace("$__range", "10m"))
        doc = prom.query(concrete)
        assert doc.get("status") == "success", (title, concrete, doc)
        if "sluice_route_" in expr:
            assert doc["data"]["result"], f"panel {title!r} has no data: {concrete}"
    saved = next(e for t, e in queries if t == "Saved vs baseline (USD/hour) by route")  # A: baseline - cost
    result = prom.query(saved.replace("$route", "headlines").replace("$instance", ".*"))["data"]["result"]
    assert result[0]["metric"] == {"route": "headlines"} and float(result[0]["value"][1]) > 0, result
    url = (f"http://127.0.0.1:{prom.port}/api/v1/label/route/values?"
           + urllib.parse.urlencode({"match[]": "sluice_route_requests_total"}))
    with urllib.request.urlopen(url, timeout=10) as r:
        assert "headlines" in json.loads(r.read())["data"]


# ---- 7. the decision log and the flywheel ------------------------------------------------------------------------


def test_decision_log_lines_carry_the_decision_and_no_text_unless_allowed(cascade):
    sent = []
    for route, i, stream in (("headlines", ACCEPTED_ROWS[2], False), ("headlines", ESCALATED_ROWS[2], True),
                             ("headlines-text", ESCALATED_ROWS[2], False)):
        body = completion_body(route, i)
        if stream:
            (st,) = raw_streams(cascade, "/v1/completions", [body])
            h = dict(st.headers)
        else:
            status, h, _, _ = post(cascade, "/v1/completions", body)
            assert status == 200
        sent.append((route, i, stream, h))
    entries = log_entries(cascade.decision_log, [h["x-request-id"] for *_, h in sent])
    for (route, i, stream, h), e in zip(sent, entries):
        assert {"time", "id", "route", "endpoint", "stream", "status", "decision", "reason", "validator", "pre_score",
                "acceptance_score", "threshold", "tier", "escalated", "attempts", "tokens_input", "tokens_output",
                "cost_usd", "baseline_cost_usd", "latency_s", "ttft_s", "routing_us", "finish_reason",
                "token_logprobs", "first_top_logprobs"} <= set(e), sorted(e)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e["time"]
        assert (e["route"], e["endpoint"], e["stream"], e["status"]) == (route, "completions", stream, 200)
        escalated = h["x-sluice-escalated"] == "true"
        assert e["escalated"] is escalated and e["tier"] == h["x-sluice-tier"]
        assert e["decision"] == ("escalated" if escalated else "accepted")
        assert e["reason"] == h.get("x-sluice-escalation-reason")
        assert 0.0 <= e["acceptance_score"] <= 1.0 and 0.0 < e["threshold"] < 1.0
        assert (e["acceptance_score"] >= e["threshold"]) is (not escalated)
        assert e["pre_score"] is None and e["validator"] is None
        assert e["attempts"][0]["tier"] == "smollm2"
        assert [a["outcome"] for a in e["attempts"]] == (["rejected", "served"] if escalated else ["served"])
        for a in e["attempts"]:
            assert set(a) - {"score"} == {"tier", "kind", "outcome", "tokens_input", "tokens_cached",
                                          "tokens_output", "cost_usd", "seconds"}, a
            assert a["kind"] == ("local" if a["tier"] == "smollm2" else "openai"), a
        # The judged local attempt carries the score the decision compared (the route-level acceptance_score).
        assert e["attempts"][0]["score"] == pytest.approx(e["acceptance_score"])
        assert e["tokens_input"] == sum(a["tokens_input"] for a in e["attempts"])
        assert e["tokens_output"] == sum(a["tokens_output"] for a in e["attempts"])
        assert e["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in e["attempts"]))
        if not stream:
            assert e["cost_usd"] == pytest.approx(usd(h["x-sluice-cost-usd"]), abs=1e-8)
            assert e["baseline_cost_usd"] == pytest.approx(usd(h["x-sluice-baseline-cost-usd"]), abs=1e-8)
        assert 0 < e["ttft_s"] <= e["latency_s"] and e["routing_us"] >= 0
        assert e["finish_reason"] == "stop" and e["token_logprobs"] and all(x <= 0 for x in e["token_logprobs"])
        assert len(e["first_top_logprobs"]) >= 2
        if route == "headlines":
            assert "query" not in e and "answer" not in e
            assert all(tok is None for tok, _ in e["first_top_logprobs"]), "token text logged without log_text"
            headline = ROWS[i][0].split("\n")[0][len("Q: "):]
            assert headline and headline not in json.dumps(e)
        else:
            assert e["query"] == headline_prompt(i)
            assert e["answer"].strip() in LABELS + ("gold",)
            assert all(isinstance(tok, str) for tok, _ in e["first_top_logprobs"])


def write_outcomes(entries, path):
    """Labels the logged local answers against the gold labels, as an offline evaluation would: {"id", "correct"}."""
    gold_of = {PREFIX + r[0]: r[1] for r in ROWS}
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for e in entries:
            if "answer" in e:
                f.write(json.dumps({"id": e["id"], "correct": int(e["answer"].strip() == gold_of[e["query"]])}) + "\n")
                n += 1
    return n


def test_decision_log_is_complete_after_sigterm(workdir, standin, fake, refused_port):
    # A gateway of its own: the log is read once the process has exited on SIGTERM, with no polling.
    log = os.path.join(workdir, "sigterm-decisions.jsonl")
    routes = {r: CASCADE_ROUTES[r] for r in ("headlines", "headlines-text", "prescore")}
    s = SluiceProcess(write_policy(workdir, "sigterm-policy.yaml",
                                   cascade_policy(standin.port, fake.port, refused_port, log, routes)), workdir=workdir)
    ids = {}
    try:
        for route, i, stream in (("headlines-text", ACCEPTED_ROWS[0], False),
                                 ("headlines-text", ESCALATED_ROWS[0], True),
                                 ("headlines", ACCEPTED_ROWS[1], False), ("prescore", ESCALATED_ROWS[1], True)):
            if stream:
                (st,) = raw_streams(s, "/v1/completions", [completion_body(route, i)])
                assert st.status == 200
                ids[dict(st.headers)["x-request-id"]] = route
            else:
                status, h, _, raw = post(s, "/v1/completions", completion_body(route, i))
                assert status == 200, raw[:300]
                ids[h["x-request-id"]] = route
    finally:
        rc = s.stop()
    assert rc == 0, s.stderr_tail()
    entries = read_log(log)
    assert sorted(e["id"] for e in entries) == sorted(ids), "one line per routed request, no more, no less"
    for e in entries:
        assert e["route"] == ids[e["id"]]
        assert ("query" in e) is (e["route"] == "headlines-text"), e


@pytest.fixture(scope="module")
def flywheel_ids(cascade):
    """HEADLINES rows through the route that logs text (every fourth one streamed): request id -> row."""
    ids = {}
    for k, i in enumerate(FLYWHEEL_ROWS):
        body = completion_body("headlines-text", i)
        if k % 4 == 3:
            (st,) = raw_streams(cascade, "/v1/completions", [body])
            assert st.status == 200
            ids[dict(st.headers)["x-request-id"]] = i
        else:
            status, h, _, raw = post(cascade, "/v1/completions", body)
            assert status == 200, raw[:300]
            ids[h["x-request-id"]] = i
    log_entries(cascade.decision_log, ids)  # all written (in order: every earlier line too)
    return ids


def test_train_cascade_on_a_logged_text_decision_log(cascade, flywheel_ids, workdir):
    # The flywheel: the gateway's own log (text kept) joined with outcomes trains an acceptance model a route loads.
    entries = log_entries(cascade.decision_log, flywheel_ids)
    assert all(e["query"] == headline_prompt(flywheel_ids[e["id"]]) for e in entries)
    text_log = os.path.join(workdir, "flywheel-text-only.jsonl")
    with open(text_log, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in entries)
    outcomes = os.path.join(workdir, "flywheel-outcomes.jsonl")
    assert write_outcomes(entries, outcomes) == len(FLYWHEEL_ROWS)
    out = os.path.join(workdir, "flywheel-accept.bin")
    p = subprocess.run([sluice_bin(), "train-cascade", "--decision-log", text_log, "--outcomes", outcomes,
                        "--labels", "up,down,neutral,none", "--out", out], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{len(FLYWHEEL_ROWS)} joined with an outcome" in p.stderr, p.stderr
    assert os.path.getsize(out) > 0 and f"wrote {out}" in p.stdout
    # The retrained model is usable by a route: validate loads it.
    policy = {"models": {"smollm2": {"kind": "local", "gguf": MODEL}, "frontier": {
        "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": KEY_ENV}},
        "routes": {"headlines": {"tiers": ["smollm2", "frontier"], "accept": {"model": out}}}}
    p = subprocess.run([sluice_bin(), "validate", write_policy(workdir, "retrained.yaml", policy)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_train_cascade_skips_lines_without_text(cascade, flywheel_ids, workdir):
    # The gateway's whole log, as written: routes with and without log_text, and requests the local tier never saw.
    sent = []
    for route in ("headlines", "prescore"):
        status, h, _, raw = post(cascade, "/v1/completions", completion_body(route, ACCEPTED_ROWS[0]))
        assert status == 200, raw[:300]
        sent.append(h["x-request-id"])
    log_entries(cascade.decision_log, sent)
    entries = read_log(cascade.decision_log)
    no_text = sum(1 for e in entries if "query" not in e)
    assert no_text > 0 and any(e.get("first_top_logprobs") and "query" not in e for e in entries)
    outcomes = os.path.join(workdir, "flywheel-outcomes-all.jsonl")
    write_outcomes(log_entries(cascade.decision_log, flywheel_ids), outcomes)
    p = subprocess.run([sluice_bin(), "train-cascade", "--decision-log", cascade.decision_log, "--outcomes", outcomes,
                        "--labels", "up,down,neutral,none", "--out", os.path.join(workdir, "flywheel-all.bin")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"skipped {no_text} without query/answer text" in p.stderr, p.stderr


# ---- 8. refusals -------------------------------------------------------------------------------------------------


def run_sluice(*args, timeout=60):
    env = dict(os.environ, **{KEY_ENV: "sk-test"})
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=timeout, env=env)


def refusal_policy(workdir, name, routes, extra_models=None):
    models = {"smollm2": {"kind": "local", "gguf": MODEL, "context_tokens": 1024},
              "frontier": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "gpt-4-turbo",
                           "api_key_env": KEY_ENV}}
    models.update(extra_models or {})
    return write_policy(workdir, name, {"server": {"listen": "127.0.0.1", "port": 0}, "models": models,
                                        "routes": routes})


def test_validate_names_the_route_whose_acceptance_model_is_missing(workdir):
    missing = os.path.join(workdir, "no-such-accept.bin")
    path = refusal_policy(workdir, "missing-accept.yaml", {
        "fine": {"tiers": ["smollm2", "frontier"], "accept": {"labels": ["up"]}},
        "broken-route": {"tiers": ["smollm2", "frontier"], "accept": {"model": missing}}})
    p = run_sluice("validate", path)
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "broken-route" in out and "no-such-accept.bin" in out, out
    assert "'fine'" not in out, out


def test_validate_refuses_a_route_named_like_a_model(workdir):
    path = refusal_policy(workdir, "route-named-model.yaml", {"frontier": {"tiers": ["smollm2", "frontier"]}})
    p = run_sluice("validate", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "route 'frontier'" in p.stdout + p.stderr and "name of a model" in p.stdout + p.stderr


def test_serve_refuses_an_acceptance_model_of_another_local_model(workdir):
    rows = os.path.join(workdir, "pinned-rows.jsonl")
    with open(os.path.join(DATA, "smollm2-train-answers.jsonl"), encoding="utf-8") as src, \
            open(rows, "w", encoding="utf-8") as dst:
        for _ in range(60):
            dst.write(src.readline())
    other = os.path.join(workdir, "other-model-accept.bin")
    p = run_sluice("train-cascade", "--data", rows, "--labels", "up,down,neutral,none", "--local-model-id",
                   "sha256:" + "0" * 64, "--out", other)
    assert p.returncode == 0, p.stdout + p.stderr
    path = refusal_policy(workdir, "other-model.yaml",
                          {"headlines": {"tiers": ["smollm2", "frontier"], "accept": {"model": other}}})
    p = run_sluice("serve", "--config", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "retrain" in p.stderr and "headlines" in p.stderr, p.stderr
    assert "listening" not in p.stdout
