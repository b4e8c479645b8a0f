"""SSE streaming through Sluice: framing, include_usage, chunks relayed as they arrive, an upstream cut
after the 200 ending in an in-band error event, and a client disconnect cancelling the upstream."""
import http.client
import json
import time

import pytest

from conftest import RawConnection, chat_body, post_raw, sse_events

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
