#!/usr/bin/env python3
"""Renders a few conversations with the models' own Jinja chat templates (jinja2, as HF transformers does)
and writes templates_golden.json; test/engine/chat_template_test.cpp requires the native renderers to
produce exactly these strings.

  python3 test/engine/golden/make_template_golden.py
Reads tokenizer_smollm2.json and tokenizer_llama3_tiny.json from this folder (make_token_golden.py).
"""
import json
import os

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "user", "content": "  Tell me a joke.\n"},
        {"role": "assistant", "content": "Why did the gate open? It was a sluice.\n\n"},
        {"role": "user", "content": "Another one, with <b>tags</b> and\nnewlines\t."},
    ],
    [{"role": "system", "content": ""}, {"role": "user", "content": "caf\u00e9 \u2615 \u4f60\u597d"}],
    [],
]


def render(template, messages, add_generation_prompt, bos):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos, eos_token="")


def main():
    out = []
    for name, kind in [("tokenizer_smollm2.json", "chatml"), ("tokenizer_llama3_tiny.json", "llama3")]:
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            meta = json.load(f)
        bos = meta["tokens"][meta["bos_id"]] if meta["bos_id"] >= 0 else ""
        for conv in CONVERSATIONS:
            for gen in (True, False):
                out.append({"source": name, "kind": kind, "bos_text": bos if kind == "llama3" else "",
                            "messages": conv, "add_generation_prompt": gen,
                            "rendered": render(meta["chat_template"], conv, gen, bos)})
    with open(os.path.join(HERE, "templates_golden.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": out}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
