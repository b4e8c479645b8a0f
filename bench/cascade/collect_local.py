#!/usr/bin/env python3
"""Collects the local model's answers to HEADLINES rows, with the signals the cascade's acceptance model reads
(answer text, finish reason, per-token log-probs, the first token's top alternatives), labelled with the gold
answer. The output is the labelled-rows JSONL that `sluice train-cascade --data` reads.

It drives the real `sluice serve` over HTTP (/v1/completions, greedy, logprobs), so the signals are exactly what
the gateway's local tier produces. Resumable: rows already in --out are skipped.

  bench/cascade/collect_local.py --rows 0:4000 --out data/headlines/smollm2-train-answers.jsonl
"""
import argparse
import concurrent.futures
import csv
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LABELS = ["up", "down", "neutral", "none"]


def start_sluice(binary, policy):
    proc = subprocess.Popen([binary, "serve", "--config", policy, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    m = re.search(r"http://([^:]+):(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"sluice did not start: {line!r}")
    return proc, m.group(1), int(m.group(2))


def ask(host, port, body):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "gateway", "sluice"))
    ap.add_argument("--policy", default=os.path.join(ROOT, "policies", "default.yaml"))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "headlines"))
    ap.add_argument("--rows", default="0:4000", help="row range of train.csv, START:END")
    ap.add_argument("--out", required=True)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--top-logprobs", type=int, default=5)
    args = ap.parse_args()

    prefix = open(os.path.join(args.data, "prompt_prefix.txt"), encoding="utf-8").read()
    rows = list(csv.reader(open(os.path.join(args.data, "train.csv"), encoding="utf-8", newline="")))
    start, end = (int(x) for x in args.rows.split(":"))
    rows = rows[start:end]
    done = set()
    if os.path.exists(args.out):
        for line in open(args.out, encoding="utf-8"):
            if line.strip():
                done.add(json.loads(line)["id"])
    todo = [r for r in rows if r[2] not in done]
    print(f"collect: {len(todo)} rows to ask ({len(done)} already in {args.out})", flush=True)
    if not todo:
        return
    proc, host, port = start_sluice(args.sluice, args.policy)
    lock = threading.Lock()
    out = open(args.out, "a", encoding="utf-8")
    t0 = time.monotonic()
    n = 0

    def one(row):
        query, gold, rid = row
        body = {"model": args.model, "prompt": prefix + query, "max_tokens": args.max_tokens, "temperature": 0,
                "stop": ["\n"], "logprobs": args.top_logprobs}
        res = ask(host, port, body)
        ch = res["choices"][0]
        lp = ch.get("logprobs") or {}
        top = lp.get("top_logprobs") or []
        first_top = sorted(top[0].items(), key=lambda kv: -kv[1]) if top else []
        answer = ch["text"]
        rec = {"id": rid, "query": query, "answer": answer, "finish_reason": ch.get("finish_reason"),
               "token_logprobs": lp.get("token_logprobs") or [], "first_top_logprobs": first_top,
               "gold": gold, "correct": int(answer.strip().lower() == gold)}
        return rec

    try:
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            for rec in pool.map(one, todo):
                with lock:
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                    n += 1
                    if n % 50 == 0:
                        rate = n / (time.monotonic() - t0)
                        print(f"collect: {n}/{len(todo)} ({rate:.2f} rows/s)", flush=True)
    finally:
        out.close()
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
