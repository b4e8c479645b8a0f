"""Shared pieces of the benchmarks that drive the real `sluice serve` over HTTP with the frontier stand-in
(test/fakes/frontier_standin.py): children that are always stopped, the policy rewrite (stand-in, absolute paths,
port 0, decision log in a temp dir), the HEADLINES rows, a threaded request driver, summaries and bootstrap.

Used by bench/cascade/run and bench/flywheel/run:

    sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
    import sluicebench as sb

Standard library only, except PyYAML for the policy (imported when a policy is rewritten).
"""
import collections
import csv
import http.client
import json
import math
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
STANDIN = os.path.join(ROOT, "test", "fakes", "frontier_standin.py")
DEFAULT_SLUICE = os.path.join(ROOT, "build", "gateway", "sluice")
DEFAULT_DATA = os.path.join(ROOT, "data", "headlines")
LABELS = ("up", "down", "neutral", "none")
PATH_EXTS = (".gguf", ".bin", ".json", ".jsonl", ".yaml", ".yml", ".txt", ".pem", ".crt", ".key", ".csv")
LISTEN_RE = re.compile(r"sluice: listening on http://(\[[^\]]+\]|[^\s:/]+):(\d+)")
STANDIN_RE = re.compile(r"frontier_standin: listening on http://([^\s:/]+):(\d+)")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---- children ------------------------------------------------------------------------------------------------

def _child_setup():
    # Own session: a terminal Ctrl-C reaches only the bench, which then stops its children in order.
    # PR_SET_PDEATHSIG: if the bench itself is killed (SIGKILL), the kernel sends the child SIGTERM.
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except Exception:
        pass


def read_line(proc, timeout_s):
    """First stdout line of a child, or None on timeout/EOF (reads byte by byte: no buffering past the line)."""
    import select
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if not r:
            if proc.poll() is not None:
                return None
            continue
        ch = os.read(fd, 1)
        if not ch:
            return None
        if ch == b"\n":
            return buf.decode("utf-8", "replace")
        buf += ch
    return None


class Child:
    def __init__(self, name, argv, env, logdir, ready_re, ready_timeout_s):
        self.name = name
        self.stderr_path = os.path.join(logdir, f"{name}.stderr")
        self.stdout_path = os.path.join(logdir, f"{name}.stdout")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     preexec_fn=_child_setup)
        line = read_line(self.proc, ready_timeout_s)
        m = ready_re.search(line or "")
        if not m:
            self.stop(timeout_s=5)
            raise BenchError(f"{name} did not start (first stdout line {line!r}, exit code "
                             f"{self.proc.returncode}); its stderr ends with:\n{self.stderr_tail()}")
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        # Keep draining stdout so a chatty child never blocks on a full pipe.
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()

    def _drain_stdout(self):
        with open(self.stdout_path, "wb") as f:
            for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
                f.write(chunk)

    def alive(self):
        return self.proc.poll() is None

    def stderr_tail(self, n=3000):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout_s=60.0):
        """SIGTERM, wait, SIGKILL if needed; returns the exit code (None if it had to be killed)."""
        rc = self.proc.poll()
        if rc is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                rc = self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        self._stderr.close()
        return rc



# ---- policy --------------------------------------------------------------------------------------------------

def looks_like_path(key, value, parent_key):
    if not isinstance(value, str) or not value or "://" in value or os.path.isabs(value):
        return False
    if key in ("gguf", "path", "task_model") or (key == "model" and parent_key == "accept"):
        return True
    return value.startswith(("./", "../")) or value.lower().endswith(PATH_EXTS)


def absolutize(node, base, parent_key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            if looks_like_path(k, v, parent_key):
                node[k] = os.path.normpath(os.path.join(base, v))
            else:
                absolutize(v, base, k)
    elif isinstance(node, list):
        for v in node:
            absolutize(v, base, parent_key)


def load_policy(path, hint=""):
    """The policy file as a dict (PyYAML); `hint` ends the error when it is missing."""
    try:
        import yaml
    except ImportError:
        raise BenchError("PyYAML is needed (python3 -m pip install pyyaml)")
    if not os.path.exists(path):
        raise BenchError(f"policy {path} not found" + (f" ({hint})" if hint else ""))
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def rewrite_policy(doc, policy_path, standin_url, tmpdir):
    """Rewrites a policy dict in place for a benchmark run: paths made absolute against the policy's folder,
    listen on 127.0.0.1 port 0, every `kind: openai` model's base_url at the stand-in (never the real frontier),
    a local model's gguf must exist, the decision log (when there are routes or a decision_log) in tmpdir.
    Returns {"env_names": the api_key_env names to set to a dummy, "prices": {model: (input, output) USD/Mtok},
    "decision_log": its path or None}."""
    absolutize(doc, os.path.dirname(os.path.abspath(policy_path)))
    models = doc.get("models") or {}
    server = doc.setdefault("server", {}) or {}
    doc["server"] = server
    server["listen"] = "127.0.0.1"
    server["port"] = 0
    env_names = set()
    for name, m in models.items():
        if not isinstance(m, dict):
            continue
        if m.get("kind") == "openai":
            m["base_url"] = standin_url  # never the real frontier: the stand-in answers every openai model
            if m.get("api_key_env"):
                env_names.add(m["api_key_env"])
        if m.get("kind") == "local" and m.get("gguf") and not os.path.exists(m["gguf"]):
            raise BenchError(f"local model '{name}': {m['gguf']} not found (scripts/setup.sh fetches "
                             f"models/SmolLM2-135M-Instruct.Q4_1.gguf)")
    decision_log = None
    if doc.get("routes") or "decision_log" in doc:
        decision_log = os.path.join(tmpdir, "decisions.jsonl")
        dl = doc.get("decision_log") if isinstance(doc.get("decision_log"), dict) else {}
        dl["path"] = decision_log
        doc["decision_log"] = dl
    return {"env_names": sorted(env_names), "prices": model_prices(doc), "decision_log": decision_log}


def model_prices(doc):
    prices = {}
    for name, m in (doc.get("models") or {}).items():
        c = (m or {}).get("cost_per_mtok") or {}
        prices[name] = (float(c.get("input", 0) or 0), float(c.get("output", 0) or 0))
    return prices


def write_policy(doc, path, source, generator):
    import yaml
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# generated by {generator} from {os.path.abspath(source)}\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


# ---- requests ------------------------------------------------------------------------------------------------

def hfloat(h, name):
    v = h.get(name)
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


class Driver:
    def __init__(self, host, port, prefix, prices, timeout_s):
        self.host, self.port, self.prefix, self.prices, self.timeout_s = host, port, prefix, prices, timeout_s
        self.local = threading.local()

    def conn(self, fresh=False):
        c = getattr(self.local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self.local.conn = c
        return c

    def ask(self, mode, model, row):
        query, gold, rid = row
        body = json.dumps({"model": model, "prompt": self.prefix + query, "max_tokens": 4, "temperature": 0,
                           "stop": ["\n"]})
        rec = {"mode": mode, "row": rid, "gold": gold}
        t0 = time.monotonic()
        for attempt in (0, 1):
            try:
                c = self.conn(fresh=attempt > 0)
                c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                # A keep-alive connection the server closed while idle: retry once on a fresh one.
                if attempt == 1:
                    rec.update(error=f"{type(e).__name__}: {e}", latency_s=time.monotonic() - t0)
                    self.conn(fresh=True)
                    return rec
                t0 = time.monotonic()
            except OSError as e:
                rec.update(error=f"{type(e).__name__}: {e}", latency_s=time.monotonic() - t0)
                self.conn(fresh=True)
                return rec
        rec["latency_s"] = time.monotonic() - t0
        h = {k.lower(): v for k, v in r.getheaders()}
        if r.status != 200:
            rec["error"] = f"HTTP {r.status}: {data[:300].decode('utf-8', 'replace')}"
            return rec
        try:
            doc = json.loads(data)
            text = doc["choices"][0]["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            rec["error"] = f"unreadable answer: {data[:300]!r}"
            return rec
        usage = doc.get("usage") or {}
        tier = h.get("x-sluice-tier") or model
        cost = hfloat(h, "x-sluice-cost-usd")
        cost_source = "header"
        if cost is None:
            pin, pout = self.prices.get(tier, (0.0, 0.0))
            cost = (usage.get("prompt_tokens", 0) * pin + usage.get("completion_tokens", 0) * pout) / 1e6
            cost_source = "usage"
        rec.update(text=text, answer=text.strip().lower(), correct=text.strip().lower() == gold,
                   finish_reason=doc["choices"][0].get("finish_reason"), request_id=h.get("x-request-id"),
                   route=h.get("x-sluice-route"), tier=tier, escalated=h.get("x-sluice-escalated") == "true",
                   reason=h.get("x-sluice-escalation-reason"), cost_usd=cost, cost_source=cost_source,
                   baseline_cost_usd=hfloat(h, "x-sluice-baseline-cost-usd"),
                   prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
                   cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        return rec


def run_jobs(driver, jobs, concurrency, sluice, max_errors, progress_every_s=15.0):
    """Runs (mode, model, row) jobs on `concurrency` threads; returns the records in job order."""
    todo = queue.Queue()
    for i, j in enumerate(jobs):
        todo.put((i, j))
    done = queue.Queue()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            try:
                i, (mode, model, row) = todo.get_nowait()
            except queue.Empty:
                return
            done.put((i, driver.ask(mode, model, row)))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    out = [None] * len(jobs)
    n = errors = 0
    per_mode = collections.Counter()
    t0 = last = time.monotonic()
    try:
        while n < len(jobs):
            try:
                i, rec = done.get(timeout=1.0)
            except queue.Empty:
                if not sluice.alive():
                    raise BenchError(f"sluice exited (code {sluice.proc.returncode}) mid-run; its stderr ends "
                                     f"with:\n{sluice.stderr_tail()}")
                continue
            out[i] = rec
            n += 1
            per_mode[rec["mode"]] += 1
            if "error" in rec:
                errors += 1
                if errors <= 3:
                    log(f"request failed ({rec['mode']}, row {rec['row']}): {rec['error']}")
                if errors > max_errors:
                    raise BenchError(f"more than {max_errors} requests failed; last: {rec['error']}")
            now = time.monotonic()
            if now - last >= progress_every_s or (n == len(jobs) and progress_every_s < 1e9):
                last = now
                rate = n / (now - t0)
                eta = (len(jobs) - n) / rate if rate > 0 else float("inf")
                modes = " ".join(f"{m} {c}" for m, c in sorted(per_mode.items()))
                log(f"{n}/{len(jobs)} requests ({modes}), {rate:.2f} req/s, {errors} failed, "
                    f"eta {fmt_duration(eta)}")
    finally:
        stop.set()
    return out


def fmt_duration(s):
    if s == float("inf"):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ---- analysis ------------------------------------------------------------------------------------------------

def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, math.ceil(p / 100.0 * len(xs)) - 1))  # nearest rank
    return xs[k]


def summarize(recs, frontier_cost_total):
    ok = [r for r in recs if "error" not in r]
    n = len(recs)
    s = {"requests": n, "failed": n - len(ok),
         "accuracy": sum(r["correct"] for r in ok) / n if n else None,  # a failed request counts as wrong
         "cost_usd": sum(r["cost_usd"] for r in ok),
         "cost_source": sorted({r["cost_source"] for r in ok}),
         "latency_p50_s": percentile([r["latency_s"] for r in ok], 50),
         "latency_p99_s": percentile([r["latency_s"] for r in ok], 99),
         "answers": dict(collections.Counter(r["answer"] for r in ok).most_common()),
         "served_by": dict(collections.Counter(r["tier"] for r in ok).most_common())}
    s["cost_vs_frontier"] = s["cost_usd"] / frontier_cost_total if frontier_cost_total else None
    esc = [r for r in ok if r["escalated"]]
    s["escalated"] = len(esc)
    s["escalation_rate"] = len(esc) / len(ok) if ok else None
    s["escalations_by_reason"] = dict(collections.Counter(r["reason"] or "(none given)" for r in esc).most_common())
    base = [r["baseline_cost_usd"] for r in ok if r["baseline_cost_usd"] is not None]
    s["baseline_cost_usd"] = sum(base) if base else None
    s["savings_usd"] = (sum(r["baseline_cost_usd"] - r["cost_usd"] for r in ok if r["baseline_cost_usd"] is not None)
                        if base else None)
    s["baseline_headers"] = len(base)
    if esc and len(esc) < len(ok):
        s["latency_p50_local_served_s"] = percentile([r["latency_s"] for r in ok if not r["escalated"]], 50)
        s["latency_p50_escalated_s"] = percentile([r["latency_s"] for r in esc], 50)
    cached = [r["cached_tokens"] for r in ok if r.get("cached_tokens") is not None]
    if cached:
        s["cached_prompt_tokens_share"] = sum(cached) / max(1, sum(r["prompt_tokens"] or 0 for r in ok))
    return s


def read_decision_log(path):
    entries, bad = {}, 0
    if not path or not os.path.exists(path):
        return entries, bad
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                entries[str(e["id"])] = e
            except (ValueError, KeyError, TypeError):
                bad += 1
    return entries, bad

def paired_bootstrap(pairs, n_boot=1000, seed=0):
    """95% intervals of (route acc - frontier acc) and route cost / frontier cost, resampling rows."""
    rng = random.Random(seed)
    n = len(pairs)
    diffs, ratios = [], []
    for _ in range(n_boot):
        sample = [pairs[rng.randrange(n)] for _ in range(n)]
        diffs.append(sum(a[0] - b[0] for a, b in sample) / n)
        fc = sum(b[1] for _, b in sample)
        ratios.append(sum(a[1] for a, _ in sample) / fc if fc else float("nan"))
    diffs.sort()
    ratios.sort()
    lo, hi = int(0.025 * n_boot), int(0.975 * n_boot) - 1
    return {"accuracy_diff_95": [diffs[lo], diffs[hi]], "cost_ratio_95": [ratios[lo], ratios[hi]]}


def git_info():
    def git(*a):
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# ---- output --------------------------------------------------------------------------------------------------

def ms(x):
    return "-" if x is None else f"{x * 1000:.0f}"


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


# ---- setup ---------------------------------------------------------------------------------------------------

def parse_rows(spec, n, option="--rows"):
    try:
        a, b = spec.split(":")
        a, b = int(a or 0), int(b or n)
    except ValueError:
        raise BenchError(f"{option} wants START:END, got {spec!r}")
    if not 0 <= a < b <= n:
        raise BenchError(f"{option} {spec}: train.csv has {n} rows")
    return a, b


def load_headlines(data_dir):
    """(prompt prefix, rows): rows are (query, gold, id) tuples of train.csv, in file order."""
    for f in ("train.csv", "prompt_prefix.txt"):
        if not os.path.exists(os.path.join(data_dir, f)):
            raise BenchError(f"{os.path.join(data_dir, f)} not found")
    with open(os.path.join(data_dir, "prompt_prefix.txt"), encoding="utf-8") as f:
        prefix = f.read()
    with open(os.path.join(data_dir, "train.csv"), encoding="utf-8", newline="") as f:
        rows = [tuple(r[:3]) for r in csv.reader(f) if r]
    return prefix, rows


def check_sluice_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BenchError(f"sluice binary {path} not found or not executable (build it: "
                         f"cmake --build build --target sluice; or --sluice PATH)")


def start_standin(tmpdir, children, data_dir, accuracy, seed, latency_ms):
    """Starts the frontier stand-in; returns (child, its /v1 base URL)."""
    standin = Child("frontier_standin",
                    [sys.executable, STANDIN, "--port", "0", "--accuracy", str(accuracy), "--seed", str(seed),
                     "--latency-ms", str(latency_ms), "--data", os.path.join(data_dir, "train.csv")],
                    dict(os.environ), tmpdir, STANDIN_RE, 30.0)
    children.append(standin)
    return standin, f"http://{standin.host}:{standin.port}/v1"


def standin_stats(standin):
    """GET /_standin/stats, or None."""
    try:
        c = http.client.HTTPConnection(standin.host, standin.port, timeout=5)
        c.request("GET", "/_standin/stats")
        stats = json.loads(c.getresponse().read())
        c.close()
        return stats
    except (OSError, ValueError):
        return None


def sluice_env(env_names):
    env = dict(os.environ)
    env["OPENAI_API_KEY"] = "dummy"
    for name in env_names:
        env[name] = "dummy"  # the stand-in takes any key; a real one must never leave this machine
    return env


def start_sluice(binary, policy_path, env, tmpdir, children, ready_timeout_s, name="sluice"):
    log(f"starting {name} ({binary}) with {policy_path}")
    sluice = Child(name, [binary, "serve", "--config", policy_path], env, tmpdir, LISTEN_RE, ready_timeout_s)
    children.append(sluice)
    return sluice


def main_with_children(run, args, tmp_prefix, keep):
    """Runs run(args, tmpdir, children) with a temp dir and a list of children that are stopped on every exit
    (Ctrl-C and SIGTERM/SIGHUP included). Returns the exit status: run's; 2 on a BenchError; 130 when
    interrupted. The temp dir is kept with `keep`, or after an error once a policy copy (*.yaml) was written."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    children = []
    tmpdir = tempfile.mkdtemp(prefix=tmp_prefix)
    try:
        rc = run(args, tmpdir, children)
    except BenchError as e:
        log(f"error: {e}")
        keep = keep or any(f.endswith(".yaml") for f in os.listdir(tmpdir))  # sluice's stderr, the policy copy
        rc = 2
    except KeyboardInterrupt:
        log("interrupted; stopping children")
        rc = 130
    finally:
        for c in reversed(children):
            c.stop(timeout_s=10)
        if keep:
            log(f"kept {tmpdir} (policy copies, decision logs, children's stdout/stderr)")
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return rc

