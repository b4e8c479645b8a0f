#!/usr/bin/env python3
"""SentencePiece goldens (pip install sentencepiece==0.2.1 gguf==0.19.0 llama-cpp-python==0.3.36).

Trains a tiny SentencePiece BPE model (byte fallback, identity normalisation, dummy prefix: the settings of
Llama 2 / TinyLlama / Mistral vocabularies) on the tokenizer corpus of make_token_golden.py, stores it as a
vocab-only GGUF with tokenizer.ggml.model = llama, and writes next to this script:
  spm_tiny_vocab.gguf        the vocabulary (tokens, scores, token types, <s> </s> <unk>, user-defined <sep>)
  tokenizer_spm_tiny.json    its metadata, in the format of tokenizer_smollm2.json (plus scores, add_space_prefix)
  tokens_spm_tiny.json       llama.cpp's token ids for the corpus (add_bos=false), and sentencepiece's own
                             ids where llama.cpp disagrees with it (field "sentencepiece"); without
                             llama-cpp-python, sentencepiece's ids (plain text only; "generator" says which)
  tokens_gemma3.json         llama.cpp's token ids for the same corpus with Gemma 3's vocabulary (262144 pieces,
                             no dummy prefix, user-defined whitespace and HTML pieces), when
                             models/gemma-3-270m-q4_k_m.gguf is there (scripts/setup.sh --with-gemma)
Run from the repository root: python3 test/engine/golden/make_spm_golden.py
The C++ tests (test/engine/tokenizer_test.cpp) only read these files.
"""
import io
import json
import os

import sys
import types

import gguf
import sentencepiece as spm

try:
    import llama_cpp  # noqa: F401
except ImportError:  # sentencepiece's own ids then (make_token_golden imports Llama at its top)
    llama_cpp = None
    sys.modules["llama_cpp"] = types.SimpleNamespace(Llama=None, __version__="absent")
import make_token_golden as tg

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF_PATH = os.path.join(HERE, "spm_tiny_vocab.gguf")
SPECIAL = ["<s>Hello</s>", "x</s>y", "<sep>a<sep>b", " <s> spaced </s> ", "no specials here"]
GEMMA = os.path.join(HERE, "..", "..", "..", "models", "gemma-3-270m-q4_k_m.gguf")
GEMMA_SPECIAL = ["<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", "x<end_of_turn>y",
                 " <start_of_turn> spaced <eos> ", "<div>\n\n  <b>bold</b></div>", "no specials here"]


def train():
    lines = [l for l in (tg.PROSE + tg.CODE_PY + tg.CODE_CPP).splitlines() if l.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines * 4), model_writer=model, vocab_size=600,
                                   model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                                   add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
                                   character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   user_defined_symbols=["<sep>"], minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def token_type(sp, i):
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    if sp.is_unused(i):
        return 5
    return 4 if sp.id_to_piece(i) == "<sep>" else 1


def write_gguf(sp):
    n = sp.get_piece_size()
    w = gguf.GGUFWriter(GGUF_PATH, "llama")
    w.add_name("spm-tiny-vocab (Sluice test)")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([float(sp.get_score(i)) for i in range(n)])
    w.add_token_types([token_type(sp, i) for i in range(n)])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    sp = train()
    write_gguf(sp)
    meta = tg.metadata(GGUF_PATH)
    r = gguf.GGUFReader(GGUF_PATH)
    meta["scores"] = [float(s) for s in r.fields["tokenizer.ggml.scores"].contents()]
    meta["add_space_prefix"] = True
    tg.dump(meta, "tokenizer_spm_tiny.json")
    if llama_cpp is None:
        cases = [{"text": t, "special": False, "ids": sp.encode(t)}
                 for t in tg.FIXED + tg.random_strings(60, seed=20261123)]
        tg.dump({"generator": "sentencepiece " + spm.__version__, "model": os.path.basename(GGUF_PATH),
                 "add_bos": False, "cases": cases}, "tokens_spm_tiny.json")
        print(f"{len(cases)} cases from sentencepiece (llama-cpp-python is not installed)")
        return
    g = tg.golden(GGUF_PATH, SPECIAL, n_random=60)
    disagree = 0
    for c in g["cases"]:
        if "text" in c and not c["special"]:
            ours = sp.encode(c["text"])
            if ours != c["ids"]:
                c["sentencepiece"] = ours
                disagree += 1
    tg.dump(g, "tokens_spm_tiny.json")
    print(f"{len(g['cases'])} cases; sentencepiece disagrees with llama.cpp on {disagree}")
    if os.path.exists(GEMMA):
        g = tg.golden(GEMMA, GEMMA_SPECIAL, n_random=60)
        tg.dump(g, "tokens_gemma3.json")
        print(f"{len(g['cases'])} Gemma 3 cases")


if __name__ == "__main__":
    main()
