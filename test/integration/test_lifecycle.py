"""Process lifecycle and operational endpoints: the listening line, port 0 and --port, graceful signals,
/healthz, /readyz, /v1/models (and /v1/models/{id}) and /metrics (checked with promtool); HEAD on each."""
import json
import os
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import (LISTEN_RE, MODELS, UPSTREAM_KEY, RawConnection, SluiceProcess, assert_openai_error, chat_body,
                      policy_yaml, request, sluice_bin)


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


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/models", "/v1/models/gpt-fake", "/metrics"])
def test_head_is_get_without_the_body(sluice, path):
    # RFC 9110 9.3.2: the same status and headers as GET (Content-Length included), no body. The GET sent
    # right after on the same connection proves no body bytes were written.
    get_status, get_headers, get_body = request(sluice, "GET", path)
    with RawConnection(sluice) as c:
        c.send(f"HEAD {path} HTTP/1.1\r\nHost: sluice.test\r\n\r\n" f"GET /healthz HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        head = c.response("HEAD")
        after = c.response("GET")
    assert head.status == get_status == 200
    assert head.body == b""
    assert head.header("content-type") == get_headers["content-type"]
    if path != "/metrics":  # (its body changes between two scrapes)
        assert int(head.header("content-length")) == len(get_body)
    assert after is not None and after.status == 200 and after.json() == {"status": "ok"}


def test_get_only_endpoints_allow_get_and_head(sluice):
    status, headers, body = request(sluice, "POST", "/healthz", "{}")
    assert_openai_error(status, body, 405)
    assert headers.get("allow") == "GET, HEAD"
    status, headers, body = request(sluice, "DELETE", "/v1/models/gpt-fake")
    assert_openai_error(status, body, 405)
    assert headers.get("allow") == "GET, HEAD"


def test_models_retrieve_serves_models_and_routes(workdir, fake, refused_port):
    path = os.path.join(workdir, "policy-retrieve.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + "routes:\n  fast-route:\n    tiers: [gpt-fake]\n")
    s = SluiceProcess(path, workdir=workdir)
    try:
        status, headers, body = request(s, "GET", "/v1/models/gpt-fake")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert json.loads(body) == {"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "sluice"}
        status, _, body = request(s, "GET", "/v1/models/fast-route")
        assert status == 200
        assert json.loads(body) == {"id": "fast-route", "object": "model", "created": 0, "owned_by": "sluice-route"}
        listed = {m["id"]: m for m in json.loads(request(s, "GET", "/v1/models")[2])["data"]}
        assert listed["fast-route"] == json.loads(body)  # the same object as in the list
        for unknown in ("/v1/models/no-such-model", "/v1/models/a%2Fb", "/v1/models/%zz"):
            status, _, body = request(s, "GET", unknown)
            err = assert_openai_error(status, body, 404, "invalid_request_error", "model_not_found")
            assert err["param"] == "model", err
    finally:
        s.stop()


def test_a_port_in_use_is_reported_before_any_model_loads(workdir):
    """Bound first: a busy port fails in milliseconds, not after the local model's load."""
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                         "SmolLM2-135M-Instruct.Q4_1.gguf")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = os.path.join(workdir, "busy-port.yaml")
        with open(path, "w") as f:
            f.write(f"server: {{listen: 127.0.0.1, port: {port}}}\n"
                    f"models:\n  smollm2:\n    kind: local\n    gguf: {model}\n")
        r = subprocess.run([sluice_bin(), "serve", "--config", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "loading local model" not in r.stderr


def test_readyz_is_503_while_the_models_load_and_200_after(workdir):
    """The port is served from the start: /healthz 200, /readyz and the API 503 until the models are loaded."""
    import time
    import urllib.error
    import urllib.request
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                         "SmolLM2-135M-Instruct.Q4_1.gguf")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = os.path.join(workdir, "loading.yaml")
    with open(path, "w") as f:  # two local models: loading takes long enough to be seen
        f.write(f"server: {{listen: 127.0.0.1, port: {port}}}\nmodels:\n"
                f"  a:\n    kind: local\n    gguf: {model}\n  b:\n    kind: local\n    gguf: {model}\n")
    p = subprocess.Popen([sluice_bin(), "serve", "--config", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def status(method, route, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{route}", method=method, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers)

    try:
        seen, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            try:  # (not listening yet, or a loaded machine slow to answer: probe again)
                ready, _ = status("GET", "/readyz")
                seen.append(ready)
                if ready == 200:
                    break
                assert status("GET", "/healthz")[0] == 200
                chat, headers = status("POST", "/v1/chat/completions",
                                       json.dumps(chat_body("a", max_tokens=1)).encode())
                if chat == 503:
                    assert headers.get("Retry-After") == "1"
            except OSError:
                time.sleep(0.002)
        assert seen and seen[-1] == 200, seen
        assert 503 in seen, "the listener was not up before the models were loaded"
        assert p.stdout.readline().decode().startswith("sluice: listening on")
    finally:
        p.terminate()
        p.wait(10)
