#!/usr/bin/env python3
"""Serving benchmark behind bench/engine/serve_run: `sluice serve`'s local engine against llama.cpp's own server
(llama-cpp-python's `llama_cpp.server`: same GGUF, same threads, its prompt cache on), side by side in one run,
over HTTP, rounds alternating A/B then B/A. Both servers stay up; the one not measured is idle.

  headlines  HEADLINES rows 4000.. (8-shot prefix + query, POST /v1/completions, max_tokens 4, stop "\\n",
             temperature 0) at 1 and at 8 concurrent clients: requests/s.
  ttft       a prefix never seen before (a fresh nonce line, then the 8-shot prefix): one request alone
             (cold), one more with that prefix and another query alone (warm, alone), then 8 concurrent
             requests with that prefix and different queries (warm), streamed; TTFTs over the cold one.
  gaps       8 streams generating (max_tokens 400) while 4 requests with long fresh prompts (~500 tokens)
             arrive: the longest gap between two tokens of a running stream, from 1 s before the first long
             prompt until the last long prompt's first token; "n/a" when no stream was still running then (a
             server that serves requests in turn: the long prompts wait, which shows in their TTFT instead).
Standard library only."""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sluicebench as sb  # noqa: E402


def post_stream(host, port, body, on_text=None, timeout=300):
    """POST /v1/completions with stream: returns (ttft_s, text, event times of non-empty text)."""
    b = dict(body, stream=True)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(b), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise sb.BenchError(f"{port}: HTTP {resp.status}: {resp.read()[:300]!r}")
    ttft, text, times = None, "", []
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        doc = json.loads(data)
        for ch in doc.get("choices", []):
            t = ch.get("text") or ""
            if t:
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                times.append(now)
                text += t
    conn.close()
    return ttft, text, times


def post(host, port, body, timeout=300):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if resp.status != 200:
        raise sb.BenchError(f"{port}: HTTP {resp.status}: {raw[:300]!r}")
    return json.loads(raw)


def parallel(fns):
    out = [None] * len(fns)
    errs = []

    def run(i):
        try:
            out[i] = fns[i]()
        except Exception as e:  # surfaced below
            errs.append(e)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out


def headlines(srv, model, prefix, rows, concurrency):
    """Requests/s over `rows`, `concurrency` clients each taking the next row."""
    lock = threading.Lock()
    nxt = [0]

    def client():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(rows):
                return
            post(*srv, {"model": model, "prompt": prefix + rows[i][0], "max_tokens": 4, "temperature": 0,
                        "stop": ["\n"]})
    t0 = time.perf_counter()
    parallel([client] * concurrency)
    return len(rows) / (time.perf_counter() - t0)


def ttft(srv, model, prefix, rows):
    nonce = f"Session {uuid.uuid4().hex[:12]}.\n"
    body = lambda q: {"model": model, "prompt": nonce + prefix + q, "max_tokens": 4, "temperature": 0}  # noqa: E731
    cold = post_stream(*srv, body(rows[0][0]))[0]
    alone = post_stream(*srv, body(rows[9][0]))[0]  # one warm request by itself
    warm = parallel([lambda q=q: post_stream(*srv, body(q[0]))[0] for q in rows[1:9]])
    return cold, alone, warm


def gaps(srv, model, prefix):
    streams, long_done = [], threading.Event()
    window = {}

    def stream(i):
        r = post_stream(*srv, {"model": model, "prompt": f"Count from {i}: {i}, {i + 1}, {i + 2},",
                               "max_tokens": 400, "temperature": 0})
        streams.append(r[2])

    def long_prompt(j):
        nonce = f"Archive {uuid.uuid4().hex[:12]} part {j}.\n"
        return post_stream(*srv, {"model": model, "prompt": nonce + prefix + prefix, "max_tokens": 2,
                                  "temperature": 0})[0]
    ts = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    time.sleep(2.0)  # the streams are decoding
    window["start"] = time.perf_counter() - 1.0
    long_ttft = parallel([lambda j=j: long_prompt(j) for j in range(4)])
    window["end"] = time.perf_counter()
    long_done.set()
    for t in ts:
        t.join()
    worst = 0.0
    running = 0
    for times in streams:
        if times and times[-1] >= window["end"]:
            running += 1  # still generating when the last long prompt got its first token
        for a, b in zip(times, times[1:]):
            if b >= window["start"] and a <= window["end"]:
                worst = max(worst, b - a)
    return (worst if running else None), long_ttft


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, help="host:port")
    ap.add_argument("--llama", required=True, help="host:port")
    ap.add_argument("--data", default=sb.DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    prefix, rows = sb.load_headlines(a.data)
    rows = rows[4000:4000 + max(a.rows, 10)]
    servers = {"sluice": (a.sluice.split(":")[0], int(a.sluice.split(":")[1]), "smollm2"),
               "llama.cpp": (a.llama.split(":")[0], int(a.llama.split(":")[1]), "smollm2")}
    res = {n: {"rps1": [], "rps8": [], "cold": [], "alone": [], "warm": [], "warm_all": [], "gap": [],
               "long_ttft": []} for n in servers}
    for name, (h, p, m) in servers.items():  # warm-up: page the weights in; both caches learn the 8-shot prefix
        post(h, p, {"model": m, "prompt": "Hello", "max_tokens": 2, "temperature": 0})
        post(h, p, {"model": m, "prompt": prefix + rows[-1][0], "max_tokens": 4, "temperature": 0, "stop": ["\n"]})
    for r in range(a.rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for name in order:
            h, p, m = servers[name]
            srv = (h, p)
            res[name]["rps1"].append(headlines(srv, m, prefix, rows, 1))
            res[name]["rps8"].append(headlines(srv, m, prefix, rows, 8))
            cold, alone, warm = ttft(srv, m, prefix, rows[::-1])
            res[name]["cold"].append(cold)
            res[name]["alone"].append(alone / cold)
            res[name]["warm"].append(max(warm) / cold)
            res[name]["warm_all"] += [w / cold for w in warm]
            g, lt = gaps(srv, m, prefix)
            if g is not None:
                res[name]["gap"].append(g)
            res[name]["long_ttft"].append(max(lt))
            sb.log(f"round {r + 1} {name}: rps1 {res[name]['rps1'][-1]:.2f} rps8 {res[name]['rps8'][-1]:.2f} "
                   f"cold {cold * 1000:.0f} ms, one warm alone {alone * 1000:.0f} ms, 8 warm/cold max {max(warm) / cold:.3f} "
                   f"[{', '.join(f'{w * 1000:.0f}' for w in warm)}] ms, max gap "
                   f"{'n/a (no stream overlapped)' if g is None else f'{g * 1000:.0f} ms'}, "
                   f"long-prompt TTFT max {max(lt) * 1000:.0f} ms")
    print(f"| server | HEADLINES req/s, 1 client | 8 clients | cold TTFT ms | one warm alone / cold "
          f"| 8 concurrent warm: worst TTFT / cold | max token gap ms (8 streams, 4 long prompts arriving) "
          f"| long-prompt TTFT ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name in servers:
        x = res[name]
        rng = lambda k, f=1.0, d=2: (f"{med(x[k]) * f:.{d}f} [{min(x[k]) * f:.{d}f}–{max(x[k]) * f:.{d}f}]"  # noqa
                                     if x[k] else "n/a")
        print(f"| {name} | {rng('rps1')} | {rng('rps8')} | {rng('cold', 1000, 0)} | {rng('alone', 1, 3)} | {rng('warm', 1, 3)} | "
              f"{rng('gap', 1000, 0)} | {rng('long_ttft', 1000, 0)} |")
    s, l = res["sluice"], res["llama.cpp"]
    print(f"\nratios (medians): HEADLINES 1 client {med(s['rps1']) / med(l['rps1']):.2f}x, "
          f"8 clients {med(s['rps8']) / med(l['rps8']):.2f}x (target 5x); "
          f"Sluice warm TTFT / cold: worst {max(s['warm_all']):.3f} (target <= 0.10 for every one of 8); "
          f"Sluice max token gap {max(s['gap']) * 1000:.0f} ms (target <= 100 ms)" if s["gap"] else
          "Sluice max token gap n/a (no stream overlapped the long prompts)")


if __name__ == "__main__":
    try:
        main()
    except sb.BenchError as e:
        print(f"serve_bench: {e}", file=sys.stderr)
        sys.exit(1)
