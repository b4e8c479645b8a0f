"""What the request and upstream-error counters say (docs/metrics.md): sluice_requests_total counts every
answered request by the status the client got, requests refused before any endpoint with model="unknown";
sluice_upstream_errors_total counts each failed upstream attempt by what failed, as the upstream client saw it.
The session's gateway is shared, so every check is a difference between two scrapes."""
import json
import re

import pytest

from conftest import RawConnection, chat_body, post_raw, request

SERIES_RE = re.compile(r'^([a-z_:]+)\{(.*)\} ([0-9.e+-]+)$')


def scrape(s):
    status, _, body = request(s, "GET", "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        m = SERIES_RE.match(line)
        if m:
            labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def delta(before, after, name, **labels):
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def deltas(before, after, name):
    """Every series of `name` that moved: {frozenset(labels): increase}."""
    return {k[1]: v - before.get(k, 0.0) for k, v in after.items() if k[0] == name and v != before.get(k, 0.0)}


@pytest.mark.parametrize("model,reason", [
    ("fake-refused", "connect"),     # nothing listens there
    ("fake-reset", "connect"),       # reset before any answer
    ("fake-500", "http_status"),
    ("fake-malformed", "protocol"),  # 200 with a body that is not JSON
    ("fake-401", "auth"),
    ("fake-429", "rate_limited"),
    ("fake-timeout", "timeout"),
])
def test_upstream_errors_are_classified_where_they_happen(sluice, model, reason):
    before = scrape(sluice)
    status, _, _ = request(sluice, "POST", "/v1/chat/completions", chat_body(model))
    after = scrape(sluice)
    assert status >= 400
    moved = deltas(before, after, "sluice_upstream_errors_total")
    assert moved == {frozenset({("model", model), ("reason", reason)}): 1.0}, moved
    assert delta(before, after, "sluice_requests_total", model=model, status=str(status)) == 1


def test_stream_cut_after_the_200_counts_as_200(sluice):
    before = scrape(sluice)
    status, _, body = request(sluice, "POST", "/v1/chat/completions", chat_body("fake-drop", stream=True))
    after = scrape(sluice)
    assert status == 200 and b'"error"' in body  # the failure went in-band
    assert delta(before, after, "sluice_requests_total", model="fake-drop", status="200") == 1
    assert deltas(before, after, "sluice_requests_total") == {frozenset({("model", "fake-drop"), ("status", "200")}): 1}
    assert deltas(before, after, "sluice_upstream_errors_total") == {
        frozenset({("model", "fake-drop"), ("reason", "stream_cut")}): 1}


def raw_status(sluice, data):
    with RawConnection(sluice) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.response()
    assert r is not None, "closed without an answer"
    return r.status


REFUSED = {
    "unknown_path": (b"GET /v1/nope HTTP/1.1\r\nHost: sluice.test\r\n\r\n", 404),
    "wrong_method": (b"GET /v1/chat/completions HTTP/1.1\r\nHost: sluice.test\r\n\r\n", 405),
    "body_too_large": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice.test\r\nContent-Length: 99999999\r\n\r\n",
                       413),
    "head_too_large": (b"GET /healthz HTTP/1.1\r\nHost: sluice.test\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    "malformed_http": (b"NOT HTTP AT ALL\r\n\r\n", 400),
    "smuggling": (post_raw("/v1/chat/completions", json.dumps(chat_body()), extra="Transfer-Encoding: chunked\r\n"),
                  400),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_requests_are_counted_as_unknown(sluice, name):
    data, want = REFUSED[name]
    before = scrape(sluice)
    assert raw_status(sluice, data) == want
    after = scrape(sluice)
    moved = deltas(before, after, "sluice_requests_total")
    assert moved == {frozenset({("model", "unknown"), ("status", str(want))}): 1}, moved
