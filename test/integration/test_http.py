"""HTTP/1.1 framing on raw sockets: request-smuggling defences (PITFALLS.md: Beast 1.81's parser accepts
these, the gateway must reject them with 400 and close), chunked request bodies, keep-alive, and a total
(not per-read) header deadline against slowloris."""
import json
import socket
import time

import pytest

from conftest import RawConnection, chat_body, post_raw

SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: sluice.test\r\n\r\n"
CHAT = json.dumps(chat_body()).encode()


def chunked(data):
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"


def head(lines, version="HTTP/1.1"):
    return (f"POST /v1/chat/completions {version}\r\n" + "".join(l + "\r\n" for l in lines) + "\r\n").encode()


# Each case: the bytes of one request whose body (or leftover) is itself a request, so a parser that
# mis-frames it answers twice.
SMUGGLING = {
    "te_gzip": head(["Host: sluice.test", "Content-Type: application/json", "Transfer-Encoding: gzip"]) + SMUGGLED,
    "te_chunked_gzip": head(["Host: sluice.test", "Content-Type: application/json",
                             "Transfer-Encoding: chunked, gzip"]) + chunked(CHAT) + SMUGGLED,
    "te_gzip_chunked": head(["Host: sluice.test", "Content-Type: application/json",
                             "Transfer-Encoding: gzip, chunked"]) + chunked(CHAT) + SMUGGLED,
    "te_gzip_with_cl": head(["Host: sluice.test", "Content-Type: application/json", "Transfer-Encoding: gzip",
                             f"Content-Length: {len(CHAT)}"]) + CHAT + SMUGGLED,
    "cl_and_te_chunked": head(["Host: sluice.test", "Content-Type: application/json",
                               f"Content-Length: {len(chunked(CHAT)) + len(SMUGGLED)}",
                               "Transfer-Encoding: chunked"]) + chunked(CHAT) + SMUGGLED,
    "te_chunked_and_cl": head(["Host: sluice.test", "Content-Type: application/json", "Transfer-Encoding: chunked",
                               f"Content-Length: {len(CHAT)}"]) + chunked(CHAT) + SMUGGLED,
    "conflicting_cl": head(["Host: sluice.test", "Content-Type: application/json", f"Content-Length: {len(CHAT)}",
                            f"Content-Length: {len(CHAT) + len(SMUGGLED)}"]) + CHAT + SMUGGLED,
    "repeated_cl": head(["Host: sluice.test", "Content-Type: application/json", f"Content-Length: {len(CHAT)}",
                         f"Content-Length: {len(CHAT)}"]) + CHAT + SMUGGLED,
    "http11_without_host": head(["Content-Type: application/json", f"Content-Length: {len(CHAT)}"]) + CHAT
                           + SMUGGLED,
    "http10_chunked": head(["Host: sluice.test", "Content-Type: application/json", "Transfer-Encoding: chunked"],
                           "HTTP/1.0") + chunked(CHAT) + SMUGGLED,
}


@pytest.mark.parametrize("name", list(SMUGGLING))
def test_smuggling_is_400_and_closes(sluice, fake, name):
    with RawConnection(sluice) as c:
        c.send(SMUGGLING[name])
        r = c.response()
        assert r is not None, "closed without a response"
        assert r.status == 400, (r.status, r.body[:300])
        assert "error" in r.json()
        assert c.closed_by_peer(), "connection kept open (or a second, smuggled response came back)"
    assert fake.requests() == [], "the request reached the upstream"


def test_chunked_request_body_is_accepted(sluice, fake):
    with RawConnection(sluice) as c:
        c.send(head(["Host: sluice.test", "Content-Type: application/json", "Transfer-Encoding: chunked"])
               + b"10\r\n" + CHAT[:16] + b"\r\n" + chunked(CHAT[16:]))
        r = c.response()
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake"
    assert len(fake.requests()) == 1


def test_keep_alive_serves_several_requests_on_one_connection(sluice, fake):
    stream_body = json.dumps(chat_body(stream=True)).encode()
    with RawConnection(sluice) as c:
        local = c.sock.getsockname()
        for i in range(3):
            c.send(post_raw("/v1/chat/completions", CHAT))
            r = c.response()
            assert r is not None and r.status == 200, f"request {i}: {r and r.status}"
            assert (r.header("connection") or "").lower() != "close"
        c.send(b"GET /v1/models HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        r = c.response("GET")
        assert r.status == 200 and r.json()["object"] == "list"
        c.send(post_raw("/v1/chat/completions", stream_body))
        r = c.response()
        assert r.status == 200 and b"data: [DONE]" in r.body
        c.send(b"GET /healthz HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        r = c.response("GET")
        assert r.status == 200
        assert c.sock.getsockname() == local
    assert len(fake.requests()) == 4


def test_header_deadline_is_total_not_per_read(sluice):
    # header_timeout_ms is 1000 in the test policy; trickle one byte every 100 ms (never idle that long).
    start = time.monotonic()
    with socket.create_connection((sluice.host, sluice.port), timeout=5) as s:
        partial = b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice.test\r\nX-Slow: " + b"a" * 1000
        closed_at = None
        for b in partial:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            s.settimeout(0.1)
            try:
                data = s.recv(4096)
                # EOF, or a 408/400 answer: both mean the server gave up on us.
                closed_at = time.monotonic()
                break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed_at = time.monotonic()
                break
            if time.monotonic() - start > 5:
                break
    assert closed_at is not None, "slow header kept the connection open for 5 s"
    assert closed_at - start < 2.5, f"closed after {closed_at - start:.2f}s, header deadline is 1 s"


# Beast 1.81 joins folded header lines before the gateway sees the fields (`Content-Length:\r\n 58` arrives as
# "58") and takes a list of equal lengths (`58, 58`) as one length. A proxy in front may frame either
# differently, so both are refused outright (nginx does the same): 400 and close.
def folded(*lines):
    return ("POST /v1/chat/completions HTTP/1.1\r\n" + "".join(l + "\r\n" for l in lines) + "\r\n").encode()


FOLDING_AND_LISTS = {
    "folded_content_length": folded("Host: sluice.test", "Content-Type: application/json", "Content-Length:",
                                    f" {len(CHAT)}") + CHAT + SMUGGLED,
    "folded_content_length_list": folded("Host: sluice.test", "Content-Type: application/json",
                                         f"Content-Length: {len(CHAT)},", f"\t{len(CHAT)}") + CHAT + SMUGGLED,
    "folded_other_header": folded("Host: sluice.test", "Content-Type: application/json", "X-Note: a", " b",
                                  f"Content-Length: {len(CHAT)}") + CHAT + SMUGGLED,
    "folded_first_header": folded(" Host: sluice.test", "Content-Type: application/json",
                                  f"Content-Length: {len(CHAT)}") + CHAT + SMUGGLED,
    "content_length_list": folded("Host: sluice.test", "Content-Type: application/json",
                                  f"Content-Length: {len(CHAT)}, {len(CHAT)}") + CHAT + SMUGGLED,
    "content_length_list_no_space": folded("Host: sluice.test", "Content-Type: application/json",
                                           f"Content-Length: {len(CHAT)},{len(CHAT)}") + CHAT + SMUGGLED,
}


@pytest.mark.parametrize("name", list(FOLDING_AND_LISTS))
def test_obs_fold_and_length_lists_are_400_and_close(sluice, fake, name):
    with RawConnection(sluice) as c:
        c.send(FOLDING_AND_LISTS[name])
        r = c.response()
        assert r is not None, "closed without a response"
        assert r.status == 400, (r.status, r.body[:300])
        assert "error" in r.json()
        assert c.closed_by_peer(), "connection kept open (or a second, smuggled response came back)"
    assert fake.requests() == [], "the request reached the upstream"


def test_head_split_across_reads_is_parsed_once_whole(sluice, fake):
    # The head is buffered whole before it is parsed (to see folds): a head arriving in pieces, with the CRLF
    # of a line in one read and the next line in another, must still be served.
    data = post_raw("/v1/chat/completions", CHAT)
    end = data.index(b"\r\n\r\n")
    with RawConnection(sluice) as c:
        for piece in (data[:20], data[20:end + 2], data[end + 2:end + 3], data[end + 3:]):
            c.send(piece)
            time.sleep(0.05)
        r = c.response()
    assert r.status == 200, r.body
    assert len(fake.requests()) == 1
