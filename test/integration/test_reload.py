"""Policy reload through the real binary: SIGHUP and POST /admin/reload swap a valid policy in while requests
keep flowing; an invalid one is refused and the old one stays."""
import concurrent.futures
import hashlib
import json
import os
import signal
import threading
import time

from conftest import PRICE, SluiceProcess, chat_body, policy_yaml, request

ADMIN_KEY = "sk-sluice-test-admin-0123456789abcdef"
MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                     "SmolLM2-135M-Instruct.Q4_1.gguf")


def model_ids(s):
    return [m["id"] for m in json.loads(request(s, "GET", "/v1/models")[2])["data"]]


def wait_for(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sighup_swaps_a_valid_policy_and_keeps_requests_running(workdir, fake, refused_port):
    base = policy_yaml(fake.port, refused_port)
    path = os.path.join(workdir, "reload.yaml")
    with open(path, "w") as f:
        f.write(base)
    s = SluiceProcess(path, workdir=workdir)
    try:
        assert "added-model" not in model_ids(s)
        # A stream that runs across the reload (4 chunks, 300 ms apart), and steady traffic beside it.
        stream = {}
        t = threading.Thread(target=lambda: stream.update(
            r=request(s, "POST", "/v1/chat/completions", chat_body("fake-stream-slow", stream=True))))
        t.start()
        stop = threading.Event()
        statuses = []

        def traffic():
            while not stop.is_set():
                statuses.append(request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"))[0])

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futures = [ex.submit(traffic) for _ in range(4)]
            time.sleep(0.2)
            for generation in (2, 3):
                dear = base.replace(f"output: {PRICE['output']}", f"output: {PRICE['output'] * generation}")
                with open(path, "w") as f:
                    f.write(dear + ("  added-model:\n    kind: openai\n    base_url: http://127.0.0.1:"
                                    f"{fake.port}/v1\n    model: ok\n"))
                s.proc.send_signal(signal.SIGHUP)
                assert wait_for(lambda: f"generation {generation} serving" in s.stderr_tail(50000)), s.stderr_tail()
            time.sleep(0.2)
            stop.set()
            for fu in futures:
                fu.result()
        t.join(10)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        status, _, body = stream["r"]
        assert status == 200 and body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body
        assert "added-model" in model_ids(s)
        # the new price applies to new requests
        status, h, body = request(s, "POST", "/v1/chat/completions", chat_body("gpt-fake"))
        u = json.loads(body)["usage"]
        want = (u["prompt_tokens"] * PRICE["input"] + u["completion_tokens"] * PRICE["output"] * 3) / 1e6
        assert float(h["x-sluice-cost-usd"]) == approx(want)

        # An invalid policy is refused with its error; the running one stays.
        with open(path, "w") as f:
            f.write(base + "routes: [not, a, map\n")
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "invalid, the previous policy stays" in s.stderr_tail(50000)), s.stderr_tail()
        assert "reload.yaml:" in s.stderr_tail(50000)
        assert "added-model" in model_ids(s)
        assert request(s, "POST", "/v1/chat/completions", chat_body("added-model"))[0] == 200
        metrics = request(s, "GET", "/metrics")[2].decode()
        assert 'sluice_policy_reloads_total{result="ok"} 2' in metrics
        assert 'sluice_policy_reloads_total{result="invalid"} 1' in metrics
        assert s.proc.poll() is None  # SIGHUP never stops the process
    finally:
        assert s.stop() == 0


def approx(x):
    import pytest
    return pytest.approx(x, abs=1e-8)


def test_admin_endpoint_reloads_with_an_admin_key(workdir, fake, refused_port):
    digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    keys = f"keys:\n  ops:\n    sha256: {digest}\n    admin: true\n"
    path = os.path.join(workdir, "reload-admin.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port) + keys)
    s = SluiceProcess(path, workdir=workdir)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        assert request(s, "POST", "/admin/reload")[0] == 401
        assert json.loads(request(s, "GET", "/admin/reload", headers=auth)[2]) == {"result": "none"}
        app_key = (f"  app:\n    sha256: {hashlib.sha256(b'sk-new-app-key-000000000000').hexdigest()}\n"
                   "    budget: {usd: 1.0, per: total}\n")
        with open(path, "w") as f:
            f.write(policy_yaml(fake.port, refused_port) + keys + app_key)
        status, _, body = request(s, "POST", "/admin/reload", headers=auth)
        assert status == 202, body
        assert wait_for(lambda: json.loads(request(s, "GET", "/admin/reload", headers=auth)[2])["result"] == "ok")
        last = json.loads(request(s, "GET", "/admin/reload", headers=auth)[2])
        assert last["generation"] == 2 and last["time"].endswith("Z")
        # the new key works at once, with its budget
        app = {"Authorization": "Bearer sk-new-app-key-000000000000"}
        remaining = []
        for _ in range(3):
            status, h, _ = request(s, "POST", "/v1/chat/completions", chat_body(max_tokens=10), headers=app)
            assert status == 200
            remaining.append(float(h["x-sluice-budget-remaining-usd"]))
        # another reload (a new model) keeps what the key spent: the budget does not start again
        with open(path, "w") as f:
            f.write(policy_yaml(fake.port, refused_port) + keys + app_key + "  other:\n    sha256: " +
                    hashlib.sha256(b"sk-other").hexdigest() + "\n")
        assert request(s, "POST", "/admin/reload", headers=auth)[0] == 202
        assert wait_for(lambda: json.loads(request(s, "GET", "/admin/reload", headers=auth)[2]).get("generation") == 3)
        status, h, _ = request(s, "POST", "/v1/chat/completions", chat_body(max_tokens=10), headers=app)
        assert status == 200
        assert float(h["x-sluice-budget-remaining-usd"]) < remaining[-1], (remaining, h)
    finally:
        s.stop()


def test_a_changed_local_model_is_reloaded_and_its_old_engine_unloaded(workdir, fake, refused_port):
    local = (f"  smollm2:\n    kind: local\n    gguf: {MODEL}\n    context_tokens: 512\n    max_sequences: 2\n")
    # (a loaded 2-core machine generates slowly: the stream across the reload gets time)
    base = policy_yaml(fake.port, refused_port).replace("request_timeout_ms: 10000", "request_timeout_ms: 120000")
    path = os.path.join(workdir, "reload-local.yaml")
    with open(path, "w") as f:
        f.write(base + local)
    s = SluiceProcess(path, workdir=workdir)
    long_prompt = "tell me more " * 200  # over 512 tokens, under 1024
    try:
        status, _, body = request(s, "POST", "/v1/chat/completions", chat_body("smollm2", long_prompt, max_tokens=2))
        assert status == 400 and b"context" in body, body
        # A stream on the old engine runs across the reload and ends normally.
        stream = {}
        t = threading.Thread(target=lambda: stream.update(r=request(
            s, "POST", "/v1/chat/completions",
            chat_body("smollm2", "Count from one to fifty.", max_tokens=60, temperature=0, stream=True,
                      stream_options={"include_usage": True}), timeout=60)))
        t.start()
        time.sleep(0.3)
        with open(path, "w") as f:
            f.write(base + local.replace("512", "1024"))
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "generation 2 serving" in s.stderr_tail(50000), 60), s.stderr_tail()
        # the new engine serves new requests: the longer context is there
        status, _, body = request(s, "POST", "/v1/chat/completions", chat_body("smollm2", long_prompt, max_tokens=2),
                                  timeout=60)
        assert status == 200, body
        t.join(60)
        status, _, body = stream["r"]
        assert status == 200 and body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body, body[-300:]
        # once nothing uses it, the old engine is stopped and its memory freed
        assert wait_for(lambda: "unloaded the previous engine of local model 'smollm2'" in s.stderr_tail(50000), 30), \
            s.stderr_tail()
        # a model left unchanged keeps its engine: no second load line for it
        with open(path, "a") as f:
            f.write("  added-model:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n    model: ok\n")
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "generation 3 serving" in s.stderr_tail(50000), 30), s.stderr_tail()
        assert s.stderr_tail(50000).count("loading local model 'smollm2'") == 2
        # removing the local model unloads it as well
        with open(path, "w") as f:
            f.write(base)
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "generation 4 serving" in s.stderr_tail(50000), 30), s.stderr_tail()
        assert wait_for(lambda: s.stderr_tail(50000).count("unloaded the previous engine of local model") == 2, 30)
        assert request(s, "POST", "/v1/chat/completions", chat_body("smollm2", max_tokens=2))[0] == 404
    finally:
        assert s.stop() == 0


def test_systemd_hears_ready_reloading_and_stopping(workdir, fake, refused_port):
    """sd_notify(3) over $NOTIFY_SOCKET, as systemd's Type=notify units expect (deploy/systemd/sluice.service)."""
    import socket
    sock_path = os.path.join(workdir, "notify.sock")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    path = os.path.join(workdir, "notify.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port))
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        s = SluiceProcess(path, workdir=workdir)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        assert sock.recv(4096).decode().startswith("READY=1")
        s.proc.send_signal(signal.SIGHUP)
        reloading = sock.recv(4096).decode()
        assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC="), reloading
        assert sock.recv(4096).decode().startswith("READY=1")
    finally:
        assert s.stop() == 0
    assert sock.recv(4096).decode().startswith("STOPPING=1")
    sock.close()


def test_a_route_added_by_a_reload_has_its_own_metric_series(workdir, fake, refused_port):
    base = policy_yaml(fake.port, refused_port)
    path = os.path.join(workdir, "reload-route.yaml")
    with open(path, "w") as f:
        f.write(base)
    s = SluiceProcess(path, workdir=workdir)
    try:
        with open(path, "w") as f:
            f.write(base + "routes:\n  added-route:\n    tiers: [gpt-fake]\n")
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "generation 2 serving" in s.stderr_tail(50000)), s.stderr_tail()
        status, h, _ = request(s, "POST", "/v1/chat/completions", chat_body("added-route"))
        assert status == 200 and h["x-sluice-route"] == "added-route"
        metrics = request(s, "GET", "/metrics")[2].decode()
        assert 'route="added-route"' in metrics and 'route="unknown"' not in metrics
    finally:
        assert s.stop() == 0
