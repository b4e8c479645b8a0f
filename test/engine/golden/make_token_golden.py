#!/usr/bin/env python3
"""Regenerates the tokenizer goldens in this folder with llama.cpp (llama-cpp-python 0.3.36, gguf 0.19.0).

  python3 test/engine/golden/make_token_golden.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes, next to this script:
  tokenizer_smollm2.json     the SmolLM2 GGUF's tokenizer metadata (tokens, types, merges, ids, template)
  tokens_smollm2.json        a varied corpus and llama.cpp's token ids for it (add_bos=false)
  llama3_tiny_vocab.gguf     a tiny vocab-only GGUF (byte-level BPE trained here, tokenizer.ggml.pre=llama-bpe)
  tokenizer_llama3_tiny.json its metadata, in the same format as tokenizer_smollm2.json
  tokens_llama3_tiny.json    llama.cpp's token ids for the corpus under that vocab
  tokens_{qwen2,gpt2,default}_tiny.json  the same vocab with tokenizer.ggml.pre = qwen2 / gpt-2 / default
                             (smaller corpus; the
                             temporary GGUFs are not kept)
The C++ tests (test/engine/tokenizer_test.cpp) only read these files; they never run Python.
"""
import collections
import json
import os
import random
import sys
import unicodedata

import gguf
import regex
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

PROSE = """\
A sluice is a gate that holds back water until someone decides it should move. Engineers who build them
worry about three things: how much water arrives, how fast it must leave, and what happens when the gate
sticks. The same worries apply to a gateway that routes requests between language models of very different
prices. Most questions are small ("What's the capital of France?") and a cheap model answers them well;
a few are hard, and sending those to a weak model wastes the user's time, which costs more than tokens.

The first prototype kept a table of 14 rules. It was wrong 23.5% of the time, mostly on questions that
looked simple but weren't: "Is 1,000,003 prime?" is short, yet a small model guesses. The second version
measured instead of guessing. It sent 2,048 sampled prompts to every tier, recorded latency (p50 = 180ms,
p99 = 2.4s) and the price per million tokens ($0.15 in, $0.60 out), and learned where the cheap tier's
answers diverged from the expensive one's. We'd hoped for a clean threshold; we didn't get one.

Streams complicate everything. Once the first byte of an answer has left, the gateway can't switch tiers
without the client noticing, so it must decide early -- within the first 50 tokens -- or commit. Timeouts
are another trap: a request that stalls for 30 seconds isn't "slow", it's broken, and the router should
treat it like any other error. They'll tell you retries are free. They aren't: each one is billed.

Il a dit : « C'est déjà l'été, n'est-ce pas ? » Ja, die Straße war naß und kühl. ¿Qué pasó después?
Nobody knew. The log said only: ERROR 0x1F4 at 03:14:15.926 -- upstream reset (attempt 3 of 5).
"""

CODE_PY = '''def route(request, tiers):
    """Pick the cheapest tier that is likely good enough."""
    for tier in sorted(tiers, key=lambda t: t.price_usd):
        if tier.score(request) >= 0.72:
            return tier
    return tiers[-1]


if __name__ == "__main__":
    print(route({"q": "hi"}, []))  # TODO: real tiers
'''

CODE_CPP = '''template <class T>
auto clamp(T v, T lo, T hi) -> T {
\treturn v < lo ? lo : (hi < v ? hi : v);
}
int main(int argc, char** argv) { std::vector<int> xs{1, 22, 333, 4444}; return xs[argc % 4] != 0x7f; }
'''

FIXED = [
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \n", "\n ", "a", "Hello", "Hello world",
    "Hello, world!", "   leading spaces", "trailing spaces   ", "a  b   c    d     e",
    "I'll've", "I'LL", "don't", "'s", "it's 'quoted'", "We're", "they'D", "you've", "'ll'm'd", "O'Neil's",
    "1", "12", "123", "1234", "1234567890123", "3.14159265358979", "$1,000,000.00", "2024-01-15T10:30:00Z",
    "\uff10\uff11\uff12\uff13", "\u0661\u0662\u0663", "\u216b", "\u00bd \u00b2 \u2460", "v2.0.1-rc3", "x1y2z3",
    "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7", "I \u2764\ufe0f NY",
    "\U0001F600\U0001F600\U0001F600 ok",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "caf\u00e9 na\u00efve fa\u00e7ade", "e\u0301 vs \u00e9", "\u00c5ngstr\u00f6m", "Stra\u00dfe",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e44\u0e17\u0e22",
    "mixed English \u4e2d\u6587 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 123 \U0001F680!",
    "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "< |im_start| >", "<repo_name>", "<|im_start|",
    "\u00a0nbsp", "\u3000ideographic space", "a\r\nb", "line1\n\n\n  line2", " " * 100, "x" + " " * 50 + "y",
    "\t\n \t\n", "\n\n\n\n\nword", "word\n\n\n\n\n", "a \u2003 b", "a\u2028b\u2029c", "\u0085next",
    "!!!???...", "...", " ...", "a--b", "(((nested)))", "#include <stdio.h>", "http://example.com/path?q=1&r=2",
    "user@example.com", "snake_case_name", "camelCaseName", "ALLCAPS", "Title Case Words",
    CODE_PY, CODE_CPP, '{"key": [1, 2.5, "three", null], "nested": {"a": true}}',
    PROSE, PROSE * 2,
]

SPECIAL_SMOLLM2 = [
    "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>", "x<|im_end|>y", "<|im_start|><|im_start|", "<reponame><repo_name>",
    "plain text only", "  <|im_end|>  ",
]

SPECIAL_LLAMA3 = [
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "x<|eot_id|>y", "<|end_of_text|>", "no specials here",
]

INVALID = [b"\xff\xfeabc", b"abc\xe2\x82", b"\xc0\x80 x", b"\xed\xa0\x80", b"ok \x80\x80 ok", b"\xf0\x9f\x98"]


def random_strings(n, seed):
    """Random mixes of assigned code points from many scripts and categories (fixed seed)."""
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7F)],
        [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000"],
        [chr(c) for c in range(0xA0, 0x250)],
        [chr(c) for c in range(0x370, 0x3FF)] + [chr(c) for c in range(0x400, 0x4FF)],
        [chr(c) for c in range(0x600, 0x6FF)] + [chr(c) for c in range(0x900, 0x97F)],
        [chr(c) for c in range(0x4E00, 0x4F00)] + [chr(c) for c in range(0x3040, 0x30FF)],
        [chr(c) for c in range(0x1F300, 0x1F64F)] + ["\u200d", "\ufe0f"],
        [chr(c) for c in range(0x2000, 0x2BFF)],
        [chr(c) for c in range(0x300, 0x36F)],
        list("0123456789") + ["\u0660", "\u06f1", "\u0966", "\uff15", "\u2153", "\u00b9"],
        ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"],
    ]
    out = []
    for _ in range(n):
        s = []
        for _ in range(rng.randint(1, 40)):
            pool = rng.choice(pools)
            s.append(rng.choice(pool))
        text = "".join(s)
        # Only code points assigned in Unicode 14 (older than every table involved), so the goldens do not
        # depend on which Unicode version a tokenizer's category table was built from.
        if all(unicodedata.category(ch) != "Cn" for ch in text):
            out.append(text)
    return out


def metadata(path):
    r = gguf.GGUFReader(path)

    def get(key, default=None):
        f = r.fields.get(key)
        return f.contents() if f is not None else default

    return {
        "model": get("tokenizer.ggml.model", ""),
        "pre": get("tokenizer.ggml.pre", ""),
        "tokens": get("tokenizer.ggml.tokens", []),
        "token_types": [int(t) for t in get("tokenizer.ggml.token_type", [])],
        "merges": get("tokenizer.ggml.merges", []),
        "bos_id": int(get("tokenizer.ggml.bos_token_id", -1)),
        "eos_id": int(get("tokenizer.ggml.eos_token_id", -1)),
        "eot_id": int(get("tokenizer.ggml.eot_token_id", -1)),
        "pad_id": int(get("tokenizer.ggml.padding_token_id", -1)),
        "unk_id": int(get("tokenizer.ggml.unknown_token_id", -1)),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": get("tokenizer.chat_template", ""),
    }


def golden(path, special_cases, n_random=120):
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    texts = FIXED + random_strings(n_random, seed=20261123)
    for t in texts:
        cases.append({"text": t, "special": False, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)})
    for t in special_cases:
        cases.append({"text": t, "special": True, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)})
    for b in INVALID:
        cases.append({"hex": b.hex(), "special": False, "ids": llm.tokenize(b, add_bos=False, special=False)})
    return {"generator": "llama-cpp-python " + __import__("llama_cpp").__version__, "model": os.path.basename(path),
            "add_bos": False, "cases": cases}


def train_bpe(text, n_merges):
    """Plain byte-level BPE training on `text` (GPT-2 byte alphabet), returning (vocab, merges)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    k = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + k)
            k += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    pat = regex.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    words = collections.Counter(tuple(byte_char[b] for b in w.encode("utf-8")) for w in pat.findall(text))
    vocab = [byte_char[b] for b in range(256)]
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(a + " " + b)
        vocab.append(a + b)
        new_words = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return vocab, merges


def write_llama3_tiny(path, pre="llama-bpe"):
    vocab, merges = train_bpe(PROSE + CODE_PY + CODE_CPP + " ".join(FIXED[:60]), 700)
    types = [1] * len(vocab)
    # Whole-word tokens that no merge sequence produces: llama.cpp's Llama 3 path (ignore_merges) emits them
    # whole, plain BPE would not.
    for extra in ["\u0120gateway", "\u0120Sluice", "routing"]:
        if extra not in vocab:
            vocab.append(extra)
            types.append(1)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    first_special = len(vocab)
    vocab += specials
    types += [3] * len(specials)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("llama3-tiny-vocab (Sluice test)")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(first_special)
    w.add_eos_token_id(first_special + 4)
    w.add_add_bos_token(True)
    # Same structure as Meta's Llama 3 (3.0) template: BOS before the first message, each message trimmed.
    w.add_chat_template("{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
                        "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
                        "{% endfor %}{% if add_generation_prompt %}"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dump(obj, name):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    dump(metadata(model), "tokenizer_smollm2.json")
    dump(golden(model, SPECIAL_SMOLLM2), "tokens_smollm2.json")
    tiny = os.path.join(HERE, "llama3_tiny_vocab.gguf")
    write_llama3_tiny(tiny)
    dump(metadata(tiny), "tokenizer_llama3_tiny.json")
    dump(golden(tiny, SPECIAL_LLAMA3), "tokens_llama3_tiny.json")
    for pre, name in [("qwen2", "qwen2"), ("gpt-2", "gpt2"), ("default", "default")]:
        tmp = os.path.join(HERE, f"_tmp_{name}.gguf")
        write_llama3_tiny(tmp, pre)
        try:
            dump(golden(tmp, SPECIAL_LLAMA3[:2], n_random=40), f"tokens_{name}_tiny.json")
        finally:
            os.remove(tmp)


if __name__ == "__main__":
    main()
