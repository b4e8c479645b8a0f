"""Process lifecycle and operational endpoints: the listening line, port 0 and --port, graceful signals,
/healthz, /readyz, /v1/models and /metrics (checked with promtool)."""
import json
import os
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import (LISTEN_RE, MODELS, UPSTREAM_KEY, SluiceProcess, chat_body, policy_yaml, request)


def test_prints_listening_line_and_serves_health(sluice):
    assert LISTEN_RE.match(sluice.first_line), sluice.first_line
    assert sluice.port != 0
    status, _, _ = request(sluice, "GET", "/healthz")
    assert status == 200
    status, _, _ = request(sluice, "GET", "/readyz")
    assert status == 200


def test_port_flag_overrides_policy_port_and_sigint_exits_zero(workdir, fake, refused_port):
    # The policy names a port that is already taken: only --port 0 lets the server start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        taken_port = taken.getsockname()[1]
        path = os.path.join(workdir, "policy-port-flag.yaml")
        with open(path, "w") as f:
            f.write(policy_yaml(fake.port, refused_port, server_port=taken_port))
        s = SluiceProcess(path, extra_args=["--port", "0"], workdir=workdir)
        try:
            assert s.port not in (0, taken_port)
            status, _, _ = request(s, "GET", "/healthz")
            assert status == 200
        finally:
            rc = s.stop(signal.SIGINT)
        assert rc == 0, s.stderr_tail()
        rest = s.rest_of_stdout()
        assert "listening on" not in rest, f"more than one listening line: {rest!r}"


def test_sigterm_after_traffic_exits_zero(workdir, policy_path):
    s = SluiceProcess(policy_path, workdir=workdir)
    try:
        status, _, _ = request(s, "POST", "/v1/chat/completions", chat_body())
        assert status == 200
    finally:
        rc = s.stop(signal.SIGTERM)
    assert rc == 0, s.stderr_tail()


def test_models_lists_policy_models(sluice):
    status, headers, body = request(sluice, "GET", "/v1/models")
    assert status == 200
    assert headers.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert doc["object"] == "list"
    ids = {m["id"] for m in doc["data"]}
    assert set(MODELS) | {"fake-refused"} <= ids
    for m in doc["data"]:
        assert m["object"] == "model"
        assert isinstance(m["created"], int)
        assert isinstance(m["owned_by"], str) and m["owned_by"]


def test_metrics_pass_promtool_and_hide_secrets(sluice):
    for model in ("gpt-fake", "fake-500"):
        request(sluice, "POST", "/v1/chat/completions", chat_body(model))
    status, headers, body = request(sluice, "GET", "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    text = body.decode()
    assert any(l.startswith("sluice_") for l in text.splitlines()), text[:2000]
    assert UPSTREAM_KEY not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode() + "\n--- metrics ---\n" + text[:4000]
