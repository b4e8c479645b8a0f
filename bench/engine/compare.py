#!/usr/bin/env python3
"""Runs engine_bench (Sluice) and llama_cpp_side.py (llama.cpp) on the same GGUF, alternating A/B/B/A per
round, at each thread count, and prints medians, spread (min-max) and the Sluice/llama.cpp ratios last."""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    vals = {k: float(v) for k, v in re.findall(r"^(prefill_tps|decode_tps) ([0-9.]+)$", out, re.M)}
    if len(vals) != 2:
        sys.exit(f"unexpected output from {cmd[0]}: {out!r}")
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, help="path to engine_bench")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--sluice-device", default="cpu", help="engine_bench --device (bench/engine/gpu_run: cuda)")
    ap.add_argument("--llama-gpu-layers", type=int, default=0, help="llama.cpp n_gpu_layers (-1: all, on the GPU)")
    a = ap.parse_args()
    common = ["--model", a.model, "--prefill", str(a.prefill), "--decode", str(a.decode)]
    rows = []
    for th in [int(t) for t in a.threads.split(",")]:
        res = {"sluice": [], "llama.cpp": []}
        for r in range(a.rounds):
            order = ["sluice", "llama.cpp"] if r % 2 == 0 else ["llama.cpp", "sluice"]
            for who in order:
                if who == "sluice":
                    cmd = [a.sluice, "--threads", str(th), "--device", a.sluice_device] + common
                else:
                    cmd = [sys.executable, os.path.join(HERE, "llama_cpp_side.py"), "--threads", str(th),
                           "--gpu-layers", str(a.llama_gpu_layers)] + common
                v = measure(cmd)
                res[who].append(v)
                print(f"  threads={th} round={r + 1} {who:9s} prefill {v['prefill_tps']:8.1f} tok/s"
                      f"  decode {v['decode_tps']:7.1f} tok/s", flush=True)
        rows.append((th, res))
    print()
    print(f"model: {os.path.basename(a.model)}; prefill = {a.prefill} prompt tokens, decode = {a.decode} generated"
          f" tokens; {a.rounds} rounds, median [min-max] tok/s")
    print(f"{'threads':>7} {'engine':>10} {'prefill':>26} {'decode':>26}")
    ratios = []
    for th, res in rows:
        med = {}
        for who in ("sluice", "llama.cpp"):
            cells = []
            for key in ("prefill_tps", "decode_tps"):
                xs = [v[key] for v in res[who]]
                med[(who, key)] = statistics.median(xs)
                cells.append(f"{statistics.median(xs):8.1f} [{min(xs):7.1f}-{max(xs):7.1f}]")
            print(f"{th:>7} {who:>10} {cells[0]:>26} {cells[1]:>26}")
        ratios.append((th, med[("sluice", "prefill_tps")] / med[("llama.cpp", "prefill_tps")],
                       med[("sluice", "decode_tps")] / med[("llama.cpp", "decode_tps")]))
    print()
    for th, rp, rd in ratios:
        print(f"ratio Sluice/llama.cpp at {th} thread(s): prefill {rp:.2f}x, decode {rd:.2f}x")


if __name__ == "__main__":
    main()
