"""The HEADLINES frontier stand-in (test/fakes/frontier_standin.py) that cascade benchmarks put behind the gateway:
it speaks the OpenAI wire format the official SDK expects (completions and chat, plain and streaming), answers
with the requested accuracy over the dataset, is deterministic across restarts, and answers "none" to a query it
does not know. It does not need the sluice binary."""
import collections
import csv
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import openai
import pytest

from conftest import read_line_with_timeout

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "..", "fakes", "frontier_standin.py")
DATA = os.path.join(HERE, "..", "..", "data", "headlines")
LABELS = {"up", "down", "neutral", "none"}

with open(os.path.join(DATA, "prompt_prefix.txt"), encoding="utf-8") as f:
    PREFIX = f.read()
with open(os.path.join(DATA, "train.csv"), encoding="utf-8", newline="") as f:
    ROWS = [r for r in csv.reader(f) if r]


class Standin:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, STANDIN, "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = read_line_with_timeout(self.proc.stdout, 20.0) or ""
        m = re.match(r"^frontier_standin: listening on http://127\.0\.0\.1:(\d+)$", line)
        if not m:
            self.stop()
            pytest.fail(f"stand-in did not start: {line!r} {self.proc.stderr.read().decode()[-2000:]}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def labels(self, rows, chat=False):
        """The stand-in's label for each row, over one keep-alive connection (non-streaming)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        out = []
        try:
            for q in (r[0] for r in rows):
                if chat:
                    body = {"model": "m", "messages": [{"role": "user", "content": PREFIX + q}]}
                    path = "/v1/chat/completions"
                else:
                    body = {"model": "m", "prompt": PREFIX + q, "max_tokens": 4, "temperature": 0, "stop": ["\n"]}
                    path = "/v1/completions"
                conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                assert r.status == 200, data[:300]
                ch = json.loads(data)["choices"][0]
                if chat:
                    out.append(ch["message"]["content"])
                else:
                    assert ch["text"].startswith(" "), ch
                    out.append(ch["text"][1:])
        finally:
            conn.close()
        return out


@pytest.fixture(scope="module")
def standin():
    s = Standin()
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def all_answers(standin):
    return standin.labels(ROWS)


@pytest.fixture()
def client(standin):
    return openai.OpenAI(base_url=standin.url, api_key="dummy", max_retries=0, timeout=10)


def row_where(answers, correct):
    for r, a in zip(ROWS, answers):
        if (a == r[1]) == correct:
            return r, a
    raise AssertionError("no such row")


def test_accuracy_over_all_rows(all_answers):
    assert len(ROWS) == 5000 and len(all_answers) == len(ROWS)
    assert set(all_answers) <= LABELS
    acc = sum(a == r[1] for r, a in zip(ROWS, all_answers)) / len(ROWS)
    assert abs(acc - 0.856) <= 0.005, acc
    # The wrong answers are spread over the other labels, not a constant.
    wrong = collections.Counter((r[1], a) for r, a in zip(ROWS, all_answers) if a != r[1])
    assert len({a for (_, a) in wrong}) >= 3, wrong


def test_sdk_completions_plain_and_stream(client, all_answers):
    for correct in (True, False):
        (q, gold, _), label = row_where(all_answers, correct)
        prompt = PREFIX + q
        resp = client.completions.create(model="gpt-4-turbo", prompt=prompt, max_tokens=4, temperature=0,
                                         stop=["\n"])
        assert resp.choices[0].text == " " + label
        assert resp.choices[0].finish_reason == "stop"
        assert (label == gold) == correct
        want_prompt = math.ceil(len(prompt.encode("utf-8")) / 4)
        assert resp.usage.prompt_tokens == want_prompt
        assert resp.usage.completion_tokens == 2 and resp.usage.total_tokens == want_prompt + 2

        text, finish, usage = "", None, None
        for chunk in client.completions.create(model="gpt-4-turbo", prompt=prompt, max_tokens=4, stream=True,
                                               stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                assert not chunk.choices
                usage = chunk.usage
        assert text == " " + label and finish == "stop"
        assert usage is not None and usage.prompt_tokens == want_prompt and usage.completion_tokens == 2


def test_sdk_chat_plain_and_stream(client, all_answers):
    (q, gold, _), label = row_where(all_answers, False)
    messages = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": PREFIX + q}]
    resp = client.chat.completions.create(model="gpt-4-turbo", messages=messages, temperature=0)
    assert resp.choices[0].message.content == label != gold
    assert resp.choices[0].finish_reason == "stop"
    want_prompt = math.ceil(len(("Answer with one word." + PREFIX + q).encode("utf-8")) / 4)
    assert resp.usage.prompt_tokens == want_prompt and resp.usage.completion_tokens == 2

    # Without include_usage: no usage chunk at all.
    chunks = list(client.chat.completions.create(model="gpt-4-turbo", messages=messages, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == label
    assert chunks[-1].choices[0].finish_reason == "stop"

    chunks = list(client.chat.completions.create(model="gpt-4-turbo", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == want_prompt + 2
    # Content parts are read like a plain string.
    parts = [{"role": "user", "content": [{"type": "text", "text": PREFIX}, {"type": "text", "text": q}]}]
    assert client.chat.completions.create(model="m", messages=parts).choices[0].message.content == label


def test_chat_and_completions_agree(standin, all_answers):
    sample = ROWS[::50]
    assert standin.labels(sample, chat=True) == all_answers[::50]


def test_deterministic_across_restarts_and_seeded(all_answers):
    sample = ROWS[4000:5000:4]
    want = all_answers[4000:5000:4]
    again = Standin()
    try:
        assert again.labels(sample) == want
    finally:
        assert again.stop() == 0
    other = Standin("--seed", "7", "--accuracy", "0.6")
    try:
        got = other.labels(ROWS)
    finally:
        assert other.stop() == 0
    acc = sum(a == r[1] for r, a in zip(ROWS, got)) / len(ROWS)
    assert abs(acc - 0.6) <= 0.005, acc
    # Another seed marks other rows wrong.
    wrong_a = {r[2] for r, a in zip(ROWS, all_answers) if a != r[1]}
    wrong_b = {r[2] for r, a in zip(ROWS, got) if a != r[1]}
    assert len(wrong_a & wrong_b) < 0.8 * len(wrong_a)


def test_unknown_query_answers_none(client):
    resp = client.completions.create(model="m", prompt=PREFIX + "Q: the moon is made of cheese\nA:", max_tokens=4)
    assert resp.choices[0].text == " none"
    resp = client.completions.create(model="m", prompt="no question here", max_tokens=4)
    assert resp.choices[0].text == " none"
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Q: hm?\nA:"}])
    assert resp.choices[0].message.content == "none"


def test_bad_requests_and_stats(standin, client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
    assert standin.get("/health") == (200, {"status": "ok"})
    status, before = standin.get("/_standin/stats")
    assert status == 200 and before["requests"] > 0
    client.completions.create(model="m", prompt=PREFIX + ROWS[0][0], max_tokens=4)
    assert standin.get("/_standin/stats")[1]["requests"] == before["requests"] + 1


def test_latency_option():
    slow = Standin("--latency-ms", "300")
    try:
        c = openai.OpenAI(base_url=slow.url, api_key="dummy", max_retries=0, timeout=10)
        t0 = time.monotonic()
        c.completions.create(model="m", prompt=PREFIX + ROWS[1][0], max_tokens=4)
        assert time.monotonic() - t0 >= 0.3
    finally:
        assert slow.stop() == 0
