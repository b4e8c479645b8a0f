"""SSE streaming through Sluice: framing, include_usage, chunks relayed as they arrive, an upstream cut
after the 200 ending in an in-band error event, a client disconnect cancelling the upstream, back-pressure
from a slow client to the upstream, and the deadlines (a stall between chunks; the whole request)."""
import http.client
import json
import os
import socket
import time

import pytest

from conftest import (RawConnection, SluiceProcess, chat_body, policy_yaml, post_raw, read_response, sse_events)

USAGE_OK = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}


def open_stream(sluice, body):
    conn = http.client.HTTPConnection(sluice.host, sluice.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    return conn, conn.getresponse()


def read_all_events(resp):
    lines = []
    while True:
        line = resp.readline()
        if not line:
            break
        lines.append(line)
    return sse_events(lines)


def has_content(line):
    if not line.startswith(b"data:") or b"[DONE]" in line:
        return False
    doc = json.loads(line[5:])
    return bool(doc.get("choices") and doc["choices"][0].get("delta", {}).get("content"))


def chunks_of(events):
    assert events and events[-1] == "[DONE]", f"stream does not end with [DONE]: {events[-3:]}"
    return [json.loads(e) for e in events[:-1]]


def test_stream_relays_chunks_without_usage(sluice, fake):
    conn, resp = open_stream(sluice, chat_body("gpt-fake", stream=True))
    try:
        assert resp.status == 200
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        assert resp.getheader("x-sluice-tier") == "gpt-fake"
        assert resp.getheader("x-request-id")
        events = read_all_events(resp)
    finally:
        conn.close()
    chunks = chunks_of(events)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["choices"] for c in chunks), "a chunk with empty choices (usage chunk) was not asked for"
    assert all(c.get("usage") is None for c in chunks), "usage sent without stream_options.include_usage"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello from the fake"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    recs = fake.requests()
    assert len(recs) == 1 and recs[0]["json"]["stream"] is True and recs[0]["json"]["model"] == "ok"


def test_stream_include_usage_ends_with_usage_chunk(sluice):
    conn, resp = open_stream(sluice, chat_body("gpt-fake", stream=True, stream_options={"include_usage": True}))
    try:
        assert resp.status == 200
        events = read_all_events(resp)
    finally:
        conn.close()
    chunks = chunks_of(events)
    last = chunks[-1]
    assert last["choices"] == [], last
    for k, v in USAGE_OK.items():
        assert last["usage"][k] == v, last["usage"]
    assert all(c["choices"] for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "Hello from the fake"


def test_stream_chunks_arrive_as_they_are_sent(sluice, fake):
    # The fake waits 300 ms between chunks (~1.8 s in all): the first content chunk must reach us well
    # before the fake sends its last one, or the gateway is buffering the stream.
    conn, resp = open_stream(sluice, chat_body("fake-stream-slow", stream=True))
    first_content_at = None
    lines = []
    try:
        assert resp.status == 200
        while True:
            line = resp.readline()
            if not line:
                break
            lines.append(line)
            if first_content_at is None and has_content(line):
                first_content_at = time.time()
    finally:
        conn.close()
    chunks_of(sse_events(lines))
    recs = fake.requests()
    assert first_content_at is not None
    last_sent_at = recs[0]["chunk_times"][-1]
    assert first_content_at < last_sent_at - 0.5, (
        f"first content chunk arrived {first_content_at - last_sent_at:+.2f}s relative to the last one sent")


@pytest.mark.parametrize("model", ["fake-drop", "fake-reset-mid"])
def test_upstream_cut_mid_stream_ends_with_error_event(sluice, model):
    conn, resp = open_stream(sluice, chat_body(model, stream=True))
    try:
        assert resp.status == 200
        events = read_all_events(resp)
    finally:
        conn.close()
    assert len(events) >= 3, events
    assert events[-1] == "[DONE]", events[-3:]
    err = json.loads(events[-2])
    assert isinstance(err.get("error"), dict) and err["error"].get("message"), err
    first = json.loads(events[0])
    assert first["object"] == "chat.completion.chunk"  # what the upstream sent before the cut was relayed


def test_client_disconnect_cancels_upstream(sluice, fake):
    # fake-stream-long would take ~8 s; we leave after the first event.
    with RawConnection(sluice) as c:
        c.send(post_raw("/v1/chat/completions", json.dumps(chat_body("fake-stream-long", stream=True))))
        status_line = c.f.readline()
        assert b" 200 " in status_line, status_line
        while b"data:" not in c.f.readline():
            pass
    t0 = time.monotonic()
    recs = fake.wait_for(lambda rs: rs and rs[0]["closed_early"], timeout_s=3.0)
    assert recs and recs[0]["closed_early"], (
        f"upstream still streaming {time.monotonic() - t0:.1f}s after the client left: {recs and recs[0]}")
    assert not recs[0]["completed"]


def test_slow_client_slows_the_upstream_down(sluice, fake):
    # fake-flood streams ~50 MB (3000 chunks of 16 KiB) as fast as it is read. A client that stops reading must
    # make the gateway stop reading the upstream (back-pressure), not queue the stream in its own memory: the
    # fake's sends then block, and its recorded chunk times stop while the client sleeps.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # (keeps the kernel's share small and fixed)
        s.settimeout(15)
        s.connect((sluice.host, sluice.port))
        s.sendall(post_raw("/v1/chat/completions", json.dumps(chat_body("fake-flood", stream=True))))
        f = s.makefile("rb")
        assert f.peek(1), "no answer"  # the stream has begun (read into f's buffer, not consumed)
        time.sleep(2.0)
        rec, = fake.requests()
        sent = len(rec["chunk_times"])
        assert not rec["completed"], "the upstream finished its 50 MB stream while the client read nothing"
        # Socket buffers hold a few MB at each hop; the gateway's own queue 256 KiB. Unbounded, all 3000 go out.
        assert sent < 1500, f"{sent} of 3000 chunks (16 KiB each) left the upstream while the client slept"
        # Then the client reads on: everything arrives, in order, nothing dropped.
        r = read_response(f)
    assert r.status == 200
    events = sse_events(r.body.split(b"\n"))
    assert events[-1] == "[DONE]", events[-2:]
    texts = [c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, events[:-1]) if c["choices"]]
    assert sum(1 for t in texts if t) == 3000
    assert all(len(t) == 16384 for t in texts if t)
    rec, = fake.requests()
    assert rec["completed"]


def test_stall_between_chunks_ends_the_stream(sluice, fake):
    # fake-stall waits 1.5 s between chunks; its model's timeout_ms (400) bounds each gap.
    t0 = time.monotonic()
    conn, resp = open_stream(sluice, chat_body("fake-stall", stream=True))
    try:
        assert resp.status == 200
        events = read_all_events(resp)
    finally:
        conn.close()
    assert time.monotonic() - t0 < 1.4, "the stall was not cut at the model's 400 ms timeout"
    assert events[-1] == "[DONE]", events[-3:]
    err = json.loads(events[-2])["error"]
    assert err["code"] == "upstream_timeout" and "stalled" in err["message"], err


@pytest.fixture(scope="module")
def short_deadline(workdir, fake, refused_port):
    """A second gateway whose server.request_timeout_ms is 1.5 s (the models keep their own timeout_ms)."""
    text = policy_yaml(fake.port, refused_port)
    assert "request_timeout_ms: 10000" in text
    path = os.path.join(workdir, "policy-short-deadline.yaml")
    with open(path, "w") as f:
        f.write(text.replace("request_timeout_ms: 10000", "request_timeout_ms: 1500"))
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def test_request_timeout_bounds_a_whole_stream(short_deadline, fake):
    # fake-stream-long sends a chunk every 200 ms for ~8 s: no gap comes near its model's 20 s timeout_ms, but
    # the whole stream runs past server.request_timeout_ms.
    t0 = time.monotonic()
    conn, resp = open_stream(short_deadline, chat_body("fake-stream-long", stream=True))
    try:
        assert resp.status == 200
        events = read_all_events(resp)
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    assert 1.3 < elapsed < 3.0, f"the stream ended after {elapsed:.2f}s; the request deadline is 1.5 s"
    assert events[-1] == "[DONE]", events[-3:]
    err = json.loads(events[-2])["error"]
    assert err["code"] == "upstream_timeout" and "request_timeout_ms" in err["message"], err
    assert len(events) >= 4, "the chunks sent before the deadline were not relayed"
    recs = fake.wait_for(lambda rs: rs and rs[0]["closed_early"], timeout_s=3.0)
    assert recs[0]["closed_early"] and not recs[0]["completed"], "the upstream stream was not cancelled"


def test_request_timeout_before_the_answer_is_504(short_deadline, fake):
    # fake-slow answers after 8 s, well within its model's 20 s timeout_ms, but past the request's 1.5 s.
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(short_deadline.host, short_deadline.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body("fake-slow")),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 504, body
    assert body["error"]["code"] == "upstream_timeout", body
    assert 1.3 < time.monotonic() - t0 < 3.0
