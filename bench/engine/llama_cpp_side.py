#!/usr/bin/env python3
"""llama.cpp side of bench/engine/run, through llama-cpp-python's low-level API (llama_decode on a batch).
Prints "prefill_tps X" (one batch of N prompt tokens from an empty cache) and "decode_tps Y" (M greedy tokens
after a 1-token prompt, argmax of the last logits each step), the same measurements as engine_bench.
Token ids: t_i = (1000 + 37 i) mod n_vocab, as engine_bench uses."""
import argparse
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--gpu-layers", type=int, default=0)
    a = ap.parse_args()
    m = Llama(model_path=a.model, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=a.threads, n_gpu_layers=a.gpu_layers,
              n_threads_batch=a.threads, verbose=False)
    ctx = m._ctx.ctx
    n_vocab = m.n_vocab()
    mem = llama_cpp.llama_get_memory(ctx)

    def decode(tokens):
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise SystemExit(f"llama_decode failed: {rc}")

    def clear():
        llama_cpp.llama_memory_clear(mem, True)

    first = 1000 % n_vocab
    clear()
    for _ in range(8):  # warm-up: pages in the weights
        decode([first])
    if a.prefill > 0:
        prompt = [(1000 + 37 * i) % n_vocab for i in range(a.prefill)]
        clear()
        t0 = time.perf_counter()
        decode(prompt)
        np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).argmax()
        print("prefill_tps %.2f" % (a.prefill / (time.perf_counter() - t0)), flush=True)
    if a.decode > 0:
        clear()
        decode([first])
        t0 = time.perf_counter()
        for _ in range(a.decode):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            decode([int(logits.argmax())])
        print("decode_tps %.2f" % (a.decode / (time.perf_counter() - t0)), flush=True)


if __name__ == "__main__":
    main()
