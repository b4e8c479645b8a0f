#!/usr/bin/env python3
"""Writes the tiny random "llama" GGUF files the engine tests load (test/engine/data/tiny-<type>.gguf), one
per supported tensor type (and a K-quant mix with its dequantized F32 twin), with the `gguf` package (pip install gguf==0.19.0). Deterministic (fixed seed).
Each is a 2-layer GQA model (64-dim, 4 heads, 2 KV heads) with a byte-level BPE vocabulary, so llama.cpp
can load it too (Qwen 2/3 variants beside them, and a 6-layer Gemma 3 with a 5-position sliding window). Run from anywhere: python3 test/engine/golden/make_tiny_models.py
"""
import os
import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data")
Q = gguf.GGMLQuantizationType

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER, N_CTX = 64, 4, 2, 192, 2, 256
HEAD_DIM = N_EMBD // N_HEAD


def byte_tokens():
    # GPT-2's printable mapping of the 256 byte values.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def vocab():
    toks = byte_tokens()
    merges = ["Ġ t", "h e", "Ġ a", "i n", "Ġt he", "e r", "o n", "Ġ s"]
    for mg in merges:
        toks.append(mg.replace(" ", ""))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(toks) + [3] * len(specials)
    toks += specials
    return toks, types, merges


def add_vocab(w, pre):
    """The tiny byte-level BPE vocabulary (vocab()) with BOS/EOS ids, as every tiny model stores it."""
    toks, types, merges = vocab()
    n_vocab = len(toks)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(n_vocab - 3)
    w.add_eos_token_id(n_vocab - 1)
    w.add_add_bos_token(False)


def write(qtype, name, tie):
    rng = np.random.default_rng(1234)
    n_vocab = len(vocab()[0])
    w = gguf.GGUFWriter(os.path.join(OUT, name), "llama")
    w.add_name("tiny-" + qtype.name.lower())
    w.add_block_count(N_LAYER)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(qtype) if qtype not in (Q.F32, Q.F16, Q.BF16) else {Q.F32: 0, Q.F16: 1, Q.BF16: 32}[qtype])
    add_vocab(w, "smollm")
    w.add_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}")

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def add(tname, data, qt):
        if qt == Q.F32:
            w.add_tensor(tname, data)
        elif qt == Q.F16:
            w.add_tensor(tname, data.astype(np.float16))
        else:
            qd = gguf.quants.quantize(data, qt)
            w.add_tensor(tname, qd, raw_shape=qd.shape, raw_dtype=qt)

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)

    add("token_embd.weight", mat(n_vocab, N_EMBD, 1.0), qtype)
    add("output_norm.weight", norm(), Q.F32)
    if not tie:
        add("output.weight", mat(n_vocab, N_EMBD, 0.3), qtype)
    kv = HEAD_DIM * N_HEAD_KV
    for i in range(N_LAYER):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm(), Q.F32)
        add(p + "attn_q.weight", mat(N_EMBD, N_EMBD, 0.4), qtype)
        add(p + "attn_k.weight", mat(kv, N_EMBD, 0.4), qtype)
        add(p + "attn_v.weight", mat(kv, N_EMBD, 0.3), qtype)
        add(p + "attn_output.weight", mat(N_EMBD, N_EMBD, 0.15), qtype)
        add(p + "ffn_norm.weight", norm(), Q.F32)
        add(p + "ffn_gate.weight", mat(N_FF, N_EMBD, 0.3), qtype)
        add(p + "ffn_up.weight", mat(N_FF, N_EMBD, 0.3), qtype)
        add(p + "ffn_down.weight", mat(N_EMBD, N_FF, 0.1), qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# The K-quant mix (as llama.cpp's Q4_K_M lays out a model: Q4_K, with Q6_K for attn_v, ffn_down and the output,
# Q5_K for the embedding) needs rows that are multiples of 256, so it is a wider model; its weights are random
# blocks (the gguf package does not quantize K-quants), and a twin file holds the same weights dequantized by the
# gguf package's reference code, as F32. Q5_0 and Q5_1 get the 64-wide model, quantized like the others.
K_EMBD, K_FF, K_LAYER = 256, 512, 1  # (one layer keeps the F32 twin under 3 MB)
K_TYPES = {"token_embd": Q.Q5_K, "output": Q.Q6_K, "attn_q": Q.Q4_K, "attn_k": Q.Q4_K, "attn_v": Q.Q6_K,
           "attn_output": Q.Q4_K, "ffn_gate": Q.Q4_K, "ffn_up": Q.Q4_K, "ffn_down": Q.Q6_K}


def random_k_blocks(rng, rows, cols, qt, scale):
    """Random but well-formed K-quant rows whose values have roughly the given standard deviation."""
    block_bytes = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}[qt]
    nb = cols // 256
    raw = rng.integers(0, 256, size=(rows, nb, block_bytes), dtype=np.uint8)
    if qt == Q.Q6_K:
        d = (scale / 900.0 * (0.8 + 0.4 * rng.random((rows, nb)))).astype(np.float16)
        raw[:, :, 208:210] = d.view(np.uint8).reshape(rows, nb, 2)
    else:
        unit = 240.0 if qt == Q.Q4_K else 500.0
        d = (scale / unit * (0.8 + 0.4 * rng.random((rows, nb)))).astype(np.float16)
        dmin = (scale / 60.0 * rng.random((rows, nb))).astype(np.float16)
        raw[:, :, 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
        raw[:, :, 2:4] = dmin.view(np.uint8).reshape(rows, nb, 2)
    return raw.reshape(rows, nb * block_bytes)


def write_kmix(name, twin_name):
    rng = np.random.default_rng(4321)
    n_vocab = len(vocab()[0])
    writers = [(gguf.GGUFWriter(os.path.join(OUT, name), "llama"), False),
               (gguf.GGUFWriter(os.path.join(OUT, twin_name), "llama"), True)]
    head_dim = K_EMBD // N_HEAD
    for w, twin in writers:
        w.add_name("tiny-kmix" + ("-f32" if twin else ""))
        w.add_block_count(K_LAYER)
        w.add_context_length(N_CTX)
        w.add_embedding_length(K_EMBD)
        w.add_feed_forward_length(K_FF)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_rope_freq_base(10000.0)
        w.add_rope_dimension_count(head_dim)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_vocab_size(n_vocab)
        w.add_file_type(0 if twin else 15)  # 15: MOSTLY_Q4_K_M
        add_vocab(w, "smollm")

    def add(tname, rows, cols, scale):
        kind = tname.split(".")[-2]
        qt = K_TYPES[kind]
        raw = random_k_blocks(rng, rows, cols, qt, scale)
        writers[0][0].add_tensor(tname, raw, raw_shape=raw.shape, raw_dtype=qt)
        writers[1][0].add_tensor(tname, gguf.quants.dequantize(raw, qt).astype(np.float32))

    def add_f32(tname, data):
        for w, _ in writers:
            w.add_tensor(tname, data)

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(K_EMBD)).astype(np.float32)

    kv = head_dim * N_HEAD_KV
    add("token_embd.weight", n_vocab, K_EMBD, 1.0)
    add_f32("output_norm.weight", norm())
    add("output.weight", n_vocab, K_EMBD, 0.3)
    for i in range(K_LAYER):
        p = f"blk.{i}."
        add_f32(p + "attn_norm.weight", norm())
        add(p + "attn_q.weight", K_EMBD, K_EMBD, 0.2)
        add(p + "attn_k.weight", kv, K_EMBD, 0.2)
        add(p + "attn_v.weight", kv, K_EMBD, 0.15)
        add(p + "attn_output.weight", K_EMBD, K_EMBD, 0.08)
        add_f32(p + "ffn_norm.weight", norm())
        add(p + "ffn_gate.weight", K_FF, K_EMBD, 0.15)
        add(p + "ffn_up.weight", K_FF, K_EMBD, 0.15)
        add(p + "ffn_down.weight", K_EMBD, K_FF, 0.05)
    for w, _ in writers:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def add_q8(w, rng, tname, rows, cols, scale):
    """A random (rows, cols) matrix of the given standard deviation, stored as Q8_0."""
    qd = gguf.quants.quantize((rng.standard_normal((rows, cols)) * scale).astype(np.float32), Q.Q8_0)
    w.add_tensor(tname, qd, raw_shape=qd.shape, raw_dtype=Q.Q8_0)


def rand_vec(rng, n, center, spread):
    return (center + spread * rng.standard_normal(n)).astype(np.float32)


def write_qwen(arch, name):
    """Tiny Qwen 2 (Q/K/V biases) and Qwen 3 (per-head Q/K RMSNorm) models: the llama pass with NEOX RoPE."""
    rng = np.random.default_rng(2468)
    n_vocab = len(vocab()[0])
    w = gguf.GGUFWriter(os.path.join(OUT, name), arch)
    w.add_name("tiny-" + arch)
    w.add_block_count(N_LAYER)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(7)  # MOSTLY_Q8_0
    add_vocab(w, "qwen2")

    def add_q(tname, rows, cols, scale):
        add_q8(w, rng, tname, rows, cols, scale)

    def vec(n, center, spread):
        return rand_vec(rng, n, center, spread)

    kv = HEAD_DIM * N_HEAD_KV
    add_q("token_embd.weight", n_vocab, N_EMBD, 1.0)
    w.add_tensor("output_norm.weight", vec(N_EMBD, 1.0, 0.1))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", vec(N_EMBD, 1.0, 0.1))
        add_q(p + "attn_q.weight", N_EMBD, N_EMBD, 0.4)
        add_q(p + "attn_k.weight", kv, N_EMBD, 0.4)
        add_q(p + "attn_v.weight", kv, N_EMBD, 0.3)
        if arch == "qwen2":
            w.add_tensor(p + "attn_q.bias", vec(N_EMBD, 0.0, 0.5))
            w.add_tensor(p + "attn_k.bias", vec(kv, 0.0, 0.5))
            w.add_tensor(p + "attn_v.bias", vec(kv, 0.0, 0.3))
        else:
            w.add_tensor(p + "attn_q_norm.weight", vec(HEAD_DIM, 1.0, 0.2))
            w.add_tensor(p + "attn_k_norm.weight", vec(HEAD_DIM, 1.0, 0.2))
        add_q(p + "attn_output.weight", N_EMBD, N_EMBD, 0.15)
        w.add_tensor(p + "ffn_norm.weight", vec(N_EMBD, 1.0, 0.1))
        add_q(p + "ffn_gate.weight", N_FF, N_EMBD, 0.3)
        add_q(p + "ffn_up.weight", N_FF, N_EMBD, 0.3)
        add_q(p + "ffn_down.weight", N_EMBD, N_FF, 0.1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Gemma 3: six layers (llama.cpp makes every sixth global, the rest sliding-window), a window of 5 positions so
# the 8- and 12-token golden sequences cross it, heads wider than n_embd / n_head (q_dim 128 > n_embd 64) and
# one KV head, as in Gemma-3-270M.
G_LAYER, G_HEAD_DIM, G_HEAD_KV, G_SWA = 6, 32, 1, 5


def write_gemma3(name):
    rng = np.random.default_rng(1357)
    n_vocab = len(vocab()[0])
    w = gguf.GGUFWriter(os.path.join(OUT, name), "gemma3")
    w.add_name("tiny-gemma3")
    w.add_block_count(G_LAYER)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(G_HEAD_KV)
    w.add_key_length(G_HEAD_DIM)
    w.add_value_length(G_HEAD_DIM)
    w.add_rope_freq_base(1000000.0)
    w.add_sliding_window(G_SWA)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(7)  # MOSTLY_Q8_0
    add_vocab(w, "smollm")

    q, kv = G_HEAD_DIM * N_HEAD, G_HEAD_DIM * G_HEAD_KV
    add_q8(w, rng, "token_embd.weight", n_vocab, N_EMBD, 0.15)  # (scaled by sqrt(64) in the model)
    w.add_tensor("output_norm.weight", rand_vec(rng, N_EMBD, 1.0, 0.1))
    for i in range(G_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", rand_vec(rng, N_EMBD, 1.0, 0.1))
        add_q8(w, rng, p + "attn_q.weight", q, N_EMBD, 0.4)
        add_q8(w, rng, p + "attn_k.weight", kv, N_EMBD, 0.4)
        add_q8(w, rng, p + "attn_v.weight", kv, N_EMBD, 0.3)
        w.add_tensor(p + "attn_q_norm.weight", rand_vec(rng, G_HEAD_DIM, 1.0, 0.2))
        w.add_tensor(p + "attn_k_norm.weight", rand_vec(rng, G_HEAD_DIM, 1.0, 0.2))
        add_q8(w, rng, p + "attn_output.weight", N_EMBD, q, 0.15)
        w.add_tensor(p + "post_attention_norm.weight", rand_vec(rng, N_EMBD, 1.0, 0.1))
        w.add_tensor(p + "ffn_norm.weight", rand_vec(rng, N_EMBD, 1.0, 0.1))
        add_q8(w, rng, p + "ffn_gate.weight", N_FF, N_EMBD, 0.3)
        add_q8(w, rng, p + "ffn_up.weight", N_FF, N_EMBD, 0.3)
        add_q8(w, rng, p + "ffn_down.weight", N_EMBD, N_FF, 0.1)
        w.add_tensor(p + "post_ffw_norm.weight", rand_vec(rng, N_EMBD, 1.0, 0.1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


MODELS = [(Q.F32, "tiny-f32.gguf", False), (Q.F16, "tiny-f16.gguf", True), (Q.BF16, "tiny-bf16.gguf", False),
          (Q.Q8_0, "tiny-q8_0.gguf", True), (Q.Q4_0, "tiny-q4_0.gguf", False), (Q.Q4_1, "tiny-q4_1.gguf", True),
          (Q.Q5_0, "tiny-q5_0.gguf", False), (Q.Q5_1, "tiny-q5_1.gguf", True)]

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for qt, name, tie in MODELS:
        write(qt, name, tie)
        print("wrote", name, os.path.getsize(os.path.join(OUT, name)), "bytes")
    write_kmix("tiny-kmix.gguf", "tiny-kmix-f32.gguf")
    write_qwen("qwen2", "tiny-qwen2.gguf")
    write_qwen("qwen3", "tiny-qwen3.gguf")
    write_gemma3("tiny-gemma3.gguf")
    for name in ("tiny-kmix.gguf", "tiny-kmix-f32.gguf", "tiny-qwen2.gguf", "tiny-qwen3.gguf", "tiny-gemma3.gguf"):
        print("wrote", name, os.path.getsize(os.path.join(OUT, name)), "bytes")
