"""Gateway API keys, budgets and rate limits through the real binary (issue: callers and money).

Keys live in the policy as SHA-256 hashes; budgets are reserved before dispatch and settled after; the same
tests run against the in-process store and a real redis-server started here on a free port. The overshoot
test runs four gateways on one Redis with 200 concurrent requests.
"""
import concurrent.futures
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import (KEY_ENV, MODELS, PRICE, RawConnection, SluiceProcess, chat_body, free_port, policy_yaml,
                      request, sluice_bin)

KEYS = {name: f"sk-sluice-test-{name}-0123456789abcdef" for name in
        ("open", "limited", "budget", "rpm", "tpm", "team-a", "team-b", "admin", "big")}
# A model 1000x the usual price, so that a budget of a few dollars covers tens of requests, not thousands.
DEAR = {"input": 2500.0, "cached_input": 2500.0, "output": 10000.0}
# The fake answers usage 21 prompt + 7 completion tokens: the real cost of one request to `dear`.
DEAR_COST = (21 * DEAR["input"] + 7 * DEAR["output"]) / 1e6


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def keys_yaml(budget_usd=0.001, team_usd=2.0, big_budget=3.0):
    return f"""
keys:
  open:
    sha256: {sha(KEYS['open'])}
  limited:
    sha256: "sha256:{sha(KEYS['limited'])}"
    allow: [gpt-fake]
  budget:
    sha256: {sha(KEYS['budget'])}
    budget: {{usd: {budget_usd}, per: day}}
  rpm:
    sha256: {sha(KEYS['rpm'])}
    requests_per_minute: 3
  tpm:
    sha256: {sha(KEYS['tpm'])}
    tokens_per_minute: 1000
  team-a:
    sha256: {sha(KEYS['team-a'])}
    team: shared
  team-b:
    sha256: {sha(KEYS['team-b'])}
    team: shared
  admin:
    sha256: {sha(KEYS['admin'])}
    admin: true
  big:
    sha256: {sha(KEYS['big'])}
    budget: {{usd: {big_budget}, per: month}}
    allow: [dear]
teams:
  shared:
    budget: {{usd: {team_usd}, per: total}}
"""


def dear_model(fake_port):
    price = ", ".join(f"{k}: {v}" for k, v in DEAR.items())
    return "\n".join(["  dear:", "    kind: openai", f"    base_url: http://127.0.0.1:{fake_port}/v1",
                      '    model: "ok"', f"    api_key_env: {KEY_ENV}", "    timeout_ms: 5000",
                      f"    cost_per_mtok: {{{price}}}"]) + "\n"


def write_policy(workdir, name, fake, refused_port, state="", **budgets):
    text = policy_yaml(fake.port, refused_port) + dear_model(fake.port) + keys_yaml(**budgets) + state
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def command(self, *args):
        """One command over RESP; returns the reply (str, int, None or list)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
            s.sendall(out.encode())
            f = s.makefile("rb")
            return self._read(f)

    def _read(self, f):
        line = f.readline().decode().rstrip("\r\n")
        t, rest = line[0], line[1:]
        if t == "+":
            return rest
        if t == "-":
            raise RuntimeError(rest)
        if t == ":":
            return int(rest)
        if t == "$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode()
        if t == "*":
            return [self._read(f) for _ in range(int(rest))]
        raise RuntimeError(line)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def redis(workdir):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run scripts/setup.sh")
    r = Redis(workdir)
    yield r
    r.stop()


def redis_state(redis, prefix="sluice:", on_error="fail_closed"):
    return (f"limits_state:\n  redis: redis://127.0.0.1:{redis.port}/0\n  key_prefix: \"{prefix}\"\n"
            f"  on_error: {on_error}\n  timeout_ms: 500\n")


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(request, workdir, fake, refused_port):
    """One gateway with keys, counting in memory or in Redis (a fresh key prefix per gateway)."""
    state = ""
    if request.param == "redis":
        r = request.getfixturevalue("redis")
        state = redis_state(r, prefix=f"t{time.monotonic_ns()}:")
    path = write_policy(workdir, f"keys-{request.param}.yaml", fake, refused_port, state=state)
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def auth(name):
    return {"Authorization": f"Bearer {KEYS[name]}"}


def chat(s, key=None, model="gpt-fake", headers=None, **extra):
    h = dict(headers or {})
    if key:
        h.update(auth(key))
    return request(s, "POST", "/v1/chat/completions", chat_body(model=model, **extra), headers=h)


# ---- authentication --------------------------------------------------------------------------------------------

def test_missing_and_wrong_keys_get_openai_401(gw):
    for headers in ({}, {"Authorization": "Bearer sk-nope"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    {"x-api-key": "sk-nope"}, {"Authorization": "Bearer " + KEYS["open"] + "x"}):
        status, h, body = request(gw, "POST", "/v1/chat/completions", chat_body(), headers=headers)
        assert status == 401, (headers, body)
        err = json.loads(body)["error"]
        assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
        assert h.get("www-authenticate") == "Bearer"
        assert KEYS["open"] not in body.decode()


def test_bearer_and_x_api_key_are_accepted(gw):
    assert chat(gw, "open")[0] == 200
    status, _, _ = request(gw, "POST", "/v1/chat/completions", chat_body(), headers={"x-api-key": KEYS["open"]})
    assert status == 200
    both = {"x-api-key": KEYS["open"], **auth("open")}
    assert request(gw, "POST", "/v1/chat/completions", chat_body(), headers=both)[0] == 200


def test_key_in_the_url_is_refused_even_when_valid(gw):
    for query in (f"?api_key={KEYS['open']}", f"?key={KEYS['open']}", f"?x=1&access_token={KEYS['open']}"):
        status, _, body = request(gw, "POST", "/v1/chat/completions" + query, chat_body(), headers=auth("open"))
        assert status == 401, query
        assert "URL" in json.loads(body)["error"]["message"]


def test_two_different_keys_or_repeated_headers_are_refused(gw):
    status, _, _ = request(gw, "POST", "/v1/chat/completions", chat_body(),
                           headers={"x-api-key": KEYS["rpm"], **auth("open")})
    assert status == 401
    c = RawConnection(gw)
    body = json.dumps(chat_body())
    c.send(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS['open']}\r\n"
           f"Authorization: Bearer {KEYS['open']}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n{body}")
    assert c.response().status == 401


def test_header_injection_attempts_do_not_authenticate(gw):
    body = json.dumps(chat_body())
    # obs-fold continuing the Authorization line, and a bare LF smuggling a second header
    for head in (f"Authorization: Bearer\r\n {KEYS['open']}\r\n",
                 f"Authorization: Bearer {KEYS['open']}\nX-Evil: 1\r\n"):
        c = RawConnection(gw)
        c.send(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}")
        r = c.response()
        assert r is None or r.status in (400, 401), r.status


def test_health_is_open_models_need_a_key_and_are_filtered(gw):
    assert request(gw, "GET", "/healthz")[0] == 200
    assert request(gw, "GET", "/readyz")[0] == 200
    assert request(gw, "GET", "/v1/models")[0] == 401
    status, _, body = request(gw, "GET", "/v1/models", headers=auth("limited"))
    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == ["gpt-fake"]
    assert request(gw, "GET", "/v1/models/fake-500", headers=auth("limited"))[0] == 404
    assert request(gw, "GET", "/v1/models/fake-500", headers=auth("open"))[0] == 200


def test_metrics_need_an_admin_key_when_the_policy_has_one(gw):
    assert request(gw, "GET", "/metrics")[0] == 401
    assert request(gw, "GET", "/metrics", headers=auth("open"))[0] == 403
    status, _, body = request(gw, "GET", "/metrics", headers=auth("admin"))
    assert status == 200
    text = body.decode()
    assert 'sluice_key_requests_total{key="open",outcome="admitted"}' in text
    assert 'sluice_auth_failures_total{reason="missing"}' in text
    for k in KEYS.values():
        assert k not in text and sha(k) not in text


def test_a_key_may_use_only_what_it_allows(gw):
    assert chat(gw, "limited")[0] == 200
    status, _, body = chat(gw, "limited", model="fake-cached")
    assert status == 403
    assert json.loads(body)["error"]["code"] == "model_not_allowed"


# ---- rate limits -----------------------------------------------------------------------------------------------

def test_requests_per_minute_with_openai_headers(gw):
    statuses, last = [], None
    for _ in range(4):
        status, h, body = chat(gw, "rpm")
        statuses.append(status)
        last = (h, body)
        if status == 200:
            assert h["x-ratelimit-limit-requests"] == "3"
            assert int(h["x-ratelimit-remaining-requests"]) <= 2
    assert statuses == [200, 200, 200, 429]
    h, body = last
    err = json.loads(body)["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
    assert 1 <= int(h["retry-after"]) <= 21  # one request refills in 20 s
    assert h["x-ratelimit-remaining-requests"] == "0"


def test_tokens_per_minute_refuses_a_request_larger_than_the_limit(gw):
    status, h, body = chat(gw, "tpm", max_tokens=5000)
    assert status == 429
    assert "Request too large" in json.loads(body)["error"]["message"]
    assert "retry-after" not in h
    status, h, _ = chat(gw, "tpm", max_tokens=100)
    assert status == 200
    # settled to the real 28 tokens: the bucket got the rest of the estimate back
    status, h, _ = chat(gw, "tpm", max_tokens=100)
    assert status == 200
    assert int(h["x-ratelimit-remaining-tokens"]) >= 1000 - 28 - 200


# ---- budgets ---------------------------------------------------------------------------------------------------

def test_budget_reserves_the_worst_case_and_settles_the_real_cost(gw):
    served, remaining, costs = 0.0, [], []
    for _ in range(12):
        status, h, body = chat(gw, "budget", max_tokens=10)
        if status != 200:
            break
        costs.append(float(h["x-sluice-cost-usd"]))
        served += costs[-1]
        remaining.append(float(h["x-sluice-budget-remaining-usd"]))
    assert status == 429
    err = json.loads(body)["error"]
    assert err["type"] == "insufficient_quota" and err["code"] == "insufficient_quota"
    assert 0 < int(h["retry-after"]) <= 86400  # until the day ends (UTC)
    assert served <= 0.001 + 1e-12
    assert 3 <= len(remaining) <= 8
    # Each answer's remaining budget is after its own worst-case reservation R (the first answer shows it:
    # $0.001 - R), and after each earlier request's settlement to its real cost or, if that settlement has not
    # landed yet (it is asynchronous), still its reservation R: between those two bounds, whatever the timing.
    budget, eps = 0.001, 1e-6  # (the header has six decimals)
    reserve = budget - remaining[0]
    assert reserve > max(costs)  # the worst case is dearer than what was served
    for k, left in enumerate(remaining):
        assert budget - reserve * (k + 1) - eps <= left <= budget - reserve - sum(costs[:k]) + eps, (k, remaining)


def test_a_failed_request_gives_its_reservation_back(gw):
    for _ in range(5):
        status, _, _ = chat(gw, "team-a", model="fake-500", max_tokens=10)
        assert status == 502
    time.sleep(0.2)
    # team budget ($2 total) untouched by failures: a dear request's worst case fits... only with the money back
    status, h, _ = chat(gw, "team-b", max_tokens=10)
    assert status == 200


def test_a_team_budget_is_shared_by_its_keys(workdir, fake, refused_port):
    # team budget of $0.0005 at $0.0001225 per request (reserve ~$0.00036): both keys together stop
    path = write_policy(workdir, "team.yaml", fake, refused_port, team_usd=0.0005)
    s = SluiceProcess(path, workdir=workdir)
    try:
        served, statuses = 0.0, []
        for i in range(8):
            status, h, _ = chat(s, "team-a" if i % 2 == 0 else "team-b", max_tokens=10)
            statuses.append(status)
            if status == 200:
                served += float(h["x-sluice-cost-usd"])
        assert 429 in statuses and statuses.count(200) >= 1
        assert served <= 0.0005 + 1e-12
    finally:
        s.stop()


def concurrent_spend(gateways, n=200, key="big", workers=50):
    """n requests spread over the gateways at once; returns (statuses, total served cost)."""
    def one(i):
        return chat(gateways[i % len(gateways)], key, model="dear", max_tokens=10)
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(one, range(n)))
    statuses = [r[0] for r in results]
    spent = sum(float(r[1]["x-sluice-cost-usd"]) for r in results if r[0] == 200)
    return statuses, spent


def test_budget_holds_under_200_concurrent_requests_in_one_process(workdir, fake, refused_port):
    path = write_policy(workdir, "conc-mem.yaml", fake, refused_port, big_budget=3.0)
    s = SluiceProcess(path, workdir=workdir)
    try:
        statuses, spent = concurrent_spend([s])
    finally:
        s.stop()
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 5
    assert spent <= 3.0 + DEAR_COST, spent  # overshoot at most one request's cost


def test_budget_holds_across_four_gateways_on_one_redis(workdir, fake, refused_port, redis):
    prefix = f"four{time.monotonic_ns()}:"
    path = write_policy(workdir, "conc-redis.yaml", fake, refused_port, big_budget=3.0,
                        state=redis_state(redis, prefix=prefix))
    gateways = [SluiceProcess(path, workdir=workdir) for _ in range(4)]
    try:
        statuses, spent = concurrent_spend(gateways)
        time.sleep(0.5)  # settlements are sent after the answers
        month = time.strftime("m%Y%m", time.gmtime())
        counted = int(redis.command("GET", f"{prefix}budget:key:big:{month}")) / 1e9
        open_reservations = redis.command("KEYS", f"{prefix}res:*")
    finally:
        for g in gateways:
            g.stop()
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 5
    assert spent <= 3.0 + DEAR_COST, spent
    # every request settled: Redis holds exactly what the answers said they cost
    assert open_reservations == []
    assert abs(counted - spent) < 1e-6 * max(1, statuses.count(200)), (counted, spent)


def test_rate_limit_holds_across_four_gateways(workdir, fake, refused_port, redis):
    path = write_policy(workdir, "rpm-redis.yaml", fake, refused_port,
                        state=redis_state(redis, prefix=f"rpm{time.monotonic_ns()}:"))
    gateways = [SluiceProcess(path, workdir=workdir) for _ in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            statuses = list(ex.map(lambda i: chat(gateways[i % 4], "rpm")[0], range(20)))
    finally:
        for g in gateways:
            g.stop()
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 17


# ---- the store down --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("on_error,expected", [("fail_closed", 503), ("fail_open", 200)])
def test_redis_down_follows_the_policy(workdir, fake, refused_port, on_error, expected):
    class Nowhere:
        port = free_port()  # nothing listens here
    path = write_policy(workdir, f"down-{on_error}.yaml", fake, refused_port,
                        state=redis_state(Nowhere, on_error=on_error))
    s = SluiceProcess(path, workdir=workdir)
    try:
        status, h, body = chat(s, "budget", max_tokens=10)
        _, _, metrics = request(s, "GET", "/metrics", headers=auth("admin"))
    finally:
        s.stop()
    assert status == expected, body
    if expected == 503:
        assert json.loads(body)["error"]["type"] == "api_error"
        assert h.get("retry-after") == "1"
    assert 'sluice_limits_store_errors_total{store="redis"} 1' in metrics.decode()
    assert "limits store (redis) unavailable" in s.stderr_tail()


# ---- the policy and the CLI ------------------------------------------------------------------------------------

def validate(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([sluice_bin(), "validate", path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


MINIMAL = "models:\n  m:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n"


def test_validate_reports_key_errors_with_their_line(workdir):
    rc, out = validate(workdir, "bad-keys.yaml", MINIMAL + (
        "keys:\n"
        "  a:\n"
        "    sha256: not-a-hash\n"
        "  b:\n"
        f"    sha256: {sha('x')}\n"
        "    team: nobody\n"
        "    allow: [missing-model]\n"
        "    budget: {usd: -1, per: week}\n"
        "limits_state:\n"
        "  redis: redis://:secret@127.0.0.1:6379\n"))
    assert rc != 0
    assert "bad-keys.yaml:7:13: error: 'sha256' must be 64 hex digits" in out
    assert "bad-keys.yaml:8:3: error: key 'b' names team 'nobody'" in out
    assert "missing-model" in out
    assert "'per' must be day, month or total" in out and "'usd' must be" in out
    assert "password_env" in out and "needs 'redis'" not in out
    assert "secret" not in out.replace("'redis' must not hold a password", "")


def test_keys_file_errors_name_that_file(workdir):
    with open(os.path.join(workdir, "keys-broken.yaml"), "w") as f:
        f.write("keys:\n  a:\n    sha256: [1, 2]\n")
    rc, out = validate(workdir, "uses-keys-file.yaml", MINIMAL + "keys_file: keys-broken.yaml\n")
    assert rc != 0
    assert "keys-broken.yaml:3:" in out and "'sha256' must be a string" in out


def test_keys_create_prints_a_key_whose_hash_is_the_policy_line(workdir, fake, refused_port):
    r = subprocess.run([sluice_bin(), "keys", "create", "--name", "new-app"], capture_output=True, text=True)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    key = lines[0]
    assert key.startswith("sk-sluice-") and len(key) > 40
    assert f"sha256: {sha(key)}" in r.stdout
    assert "not stored" in r.stderr
    h = subprocess.run([sluice_bin(), "keys", "hash"], input=key + "\n", capture_output=True, text=True)
    assert h.stdout.strip() == sha(key)
    # the printed lines, pasted into a policy, admit the key
    policy = policy_yaml(fake.port, refused_port) + "keys:\n" + "\n".join(lines[2:]) + "\n"
    path = os.path.join(workdir, "pasted.yaml")
    with open(path, "w") as f:
        f.write(policy)
    s = SluiceProcess(path, workdir=workdir)
    try:
        assert request(s, "POST", "/v1/chat/completions", chat_body(),
                       headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert request(s, "POST", "/v1/chat/completions", chat_body())[0] == 401
    finally:
        s.stop()


def test_open_gateway_warns_when_listening_beyond_loopback(workdir, fake, refused_port):
    path = os.path.join(workdir, "open.yaml")
    with open(path, "w") as f:
        f.write(policy_yaml(fake.port, refused_port))
    s = SluiceProcess(path, extra_args=["--listen", "0.0.0.0"], workdir=workdir)
    try:
        assert chat(s)[0] == 200  # no keys: open, as before
        time.sleep(0.1)
    finally:
        s.stop()
    assert "without API keys" in s.stderr_tail()
