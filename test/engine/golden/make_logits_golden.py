#!/usr/bin/env python3
"""Regenerates the engine's logits goldens from llama.cpp (pip install llama-cpp-python==0.3.36 gguf==0.19.0).

For each tiny test model (test/engine/data/tiny-*.gguf, written by make_tiny_models.py), for the default
model (models/SmolLM2-135M-Instruct.Q4_1.gguf, from scripts/setup.sh) and for Gemma 3 270M
(models/gemma-3-270m-q4_k_m.gguf, from scripts/setup.sh --with-gemma), it evaluates a few token sequences with
llama.cpp (2 threads, f16 KV cache, no flash attention) and writes test/engine/golden/<name>.logits:

  "SLG1", u32 n_tokens, u32 n_vocab, u32 n_full, u32 dtype (0 f32, 1 f16), u32 top_k, u32 n_cont,
  i32 tokens[n_tokens],
  n_full x (u32 position, logits[n_vocab] in dtype),
  n_tokens x top_k x (i32 id, f32 logit)        -- llama.cpp's best logits at every position
  i32 continuation[n_cont]                      -- greedy (argmax) continuation after the tokens
  f32 margin[n_cont]                            -- llama.cpp's top-1 minus top-2 logit at each of those steps

The re-quantized copies of scripts/setup.sh --with-variants (Gemma Q8_0/Q4_1, SmolLM2 Q8_0) get top-32 goldens.
Run from the repository root: python3 test/engine/golden/make_logits_golden.py [tiny-names | gemma | variants]
The C++ tests (test/engine/golden_logits_test.cpp) only read these files.
"""
import json
import os
import struct
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DATA = os.path.join(HERE, "..", "data")
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA_MODEL = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")  # scripts/setup.sh --with-gemma
# Re-quantized copies (scripts/setup.sh --with-variants): (file, golden prefix, which model's prompts)
VARIANTS = [("gemma-3-270m-q8_0.gguf", "gemma3-q8_0", "gemma"), ("gemma-3-270m-q4_1.gguf", "gemma3-q4_1", "gemma"),
            ("SmolLM2-135M-Instruct.Q8_0.gguf", "smollm2-q8_0", "smollm2")]

TINY_SEQS = [[10, 20, 30, 40, 50, 60, 70, 80], [264, 5, 99, 100, 101, 7, 7, 7, 200, 3, 150, 12]]
DEFAULT_PROMPTS = [
    ("capital", b"The capital of France is", False),
    ("story", b"Once upon a time, in a small village by the sea, there lived", False),
    ("chat", b"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
             b"<|im_start|>user\nWrite a haiku about the ocean.<|im_end|>\n<|im_start|>assistant\n", True),
]
# Gemma 3 270M: prompts tokenized by llama.cpp with its BOS; the last one is longer than the model's 512-position
# sliding window, so the global and sliding layers see different spans.
GEMMA_PROMPTS = [
    ("capital", b"The capital of France is", False),
    ("chat", b"<start_of_turn>user\nWrite a haiku about the ocean.<end_of_turn>\n<start_of_turn>model\n", True),
    ("long", b" ".join(b"Line %d: the sluice gate opens at dawn and closes at dusk." % i for i in range(45)) +
     b" The gate opens at", False),
]


def _plain_cpu_params(default=llama_cpp.llama_cpp.llama_model_default_params):
    # llama.cpp's extra CPU buffer types (AMX / repacked K-quant kernels) die with SIGILL on this machine's
    # K-quant models; the plain CPU path computes the same math.
    p = default()
    p.use_extra_bufts = False
    return p


llama_cpp.llama_cpp.llama_model_default_params = _plain_cpu_params


def evaluate(path, tokens, n_cont):
    m = Llama(model_path=path, n_ctx=1024, n_threads=2, n_batch=1024, logits_all=True, verbose=False, seed=1)
    m.eval(tokens)
    logits = np.array(m.scores[: len(tokens)], dtype=np.float32)
    cont, margins = [], []
    for _ in range(n_cont):
        row = np.array(m.scores[m.n_tokens - 1], dtype=np.float32)
        t = int(np.argmax(row))
        top2 = np.sort(row)[-2:]
        cont.append(t)
        margins.append(float(top2[1] - top2[0]))
        m.eval([t])
    return logits, (cont, margins)


def write(name, tokens, logits, full_positions, dtype, top_k, cont_margins):
    cont, margins = cont_margins
    n_vocab = logits.shape[1]
    with open(os.path.join(HERE, name + ".logits"), "wb") as f:
        f.write(b"SLG1")
        f.write(struct.pack("<6I", len(tokens), n_vocab, len(full_positions), dtype, top_k, len(cont)))
        f.write(np.array(tokens, dtype="<i4").tobytes())
        for p in full_positions:
            f.write(struct.pack("<I", p))
            f.write(logits[p].astype("<f4" if dtype == 0 else "<f2").tobytes())
        for row in logits:
            ids = np.argsort(-row, kind="stable")[:top_k]
            for i in ids:
                f.write(struct.pack("<if", int(i), float(row[i])))
        f.write(np.array(cont, dtype="<i4").tobytes())
        f.write(np.array(margins, dtype="<f4").tobytes())
    print("wrote", name + ".logits", os.path.getsize(os.path.join(HERE, name + ".logits")), "bytes")


TINY = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "kmix", "kmix-f32", "qwen2", "qwen3", "gemma3"]


def variants():
    """Top-32 goldens (no full rows) for the re-quantized copies, on their model's first and chat prompts."""
    for file, prefix, family in VARIANTS:
        prompts = [p for p in (GEMMA_PROMPTS if family == "gemma" else DEFAULT_PROMPTS) if p[0] in ("capital", "chat")]
        real_model(os.path.join(ROOT, "models", file), prefix, prompts, family == "gemma", lambda n: [], 32)


def real_model(path, prefix, prompts, add_bos, full, n_cont):
    """Goldens for a real model: full logits (f16) at the positions full(n_tokens) picks, top-32 everywhere.
    Also test/integration/golden/<prefix>_continuations.json: per prompt its token count and llama.cpp's greedy
    continuation as token bytes (hex) with top-2 margins, for the HTTP tests."""
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run scripts/setup.sh (--with-gemma for Gemma) first")
    probe = Llama(model_path=path, n_ctx=64, vocab_only=True, verbose=False)
    http = {}
    for name, text, special in prompts:
        toks = probe.tokenize(text, add_bos=add_bos, special=special)
        logits, cont = evaluate(path, toks, n_cont)
        write(f"{prefix}-{name}", toks, logits, full(len(toks)), 1, 32, cont)
        http[name] = {"prompt": text.decode("utf-8"), "prompt_tokens": len(toks),
                      "pieces": [probe.detokenize([t], special=True).hex() for t in cont[0]], "margins": cont[1]}
    out = os.path.join(ROOT, "test", "integration", "golden", f"{prefix}_continuations.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"generator": "llama-cpp-python " + llama_cpp.__version__, "model": os.path.basename(path),
                   "prompts": http}, f, indent=1)
        f.write("\n")


def main():
    # python3 make_logits_golden.py [tiny names, comma-separated | gemma | variants]: only those tiny models, only
    # Gemma, or only the re-quantized copies
    only = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    if only == ["gemma"]:
        real_model(GEMMA_MODEL, "gemma3", GEMMA_PROMPTS, True, lambda n: [n - 1], 32)
        return
    if only == ["variants"]:
        variants()
        return
    for q in TINY if only is None else only:
        path = os.path.join(DATA, f"tiny-{q}.gguf")
        for i, toks in enumerate(TINY_SEQS):
            logits, cont = evaluate(path, toks, 16)
            write(f"tiny-{q}-{i}", toks, logits, list(range(len(toks))), 0, 8, cont)
    if only is not None:
        return
    real_model(DEFAULT_MODEL, "smollm2", DEFAULT_PROMPTS, False, lambda n: [0, n - 1], 48)
    real_model(GEMMA_MODEL, "gemma3", GEMMA_PROMPTS, True, lambda n: [n - 1], 32)
    variants()


if __name__ == "__main__":
    main()
