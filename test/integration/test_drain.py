"""Graceful shutdown: SIGTERM stops accepting new connections but lets a request in flight finish."""
import http.client
import json
import signal
import socket
import time

from conftest import SluiceProcess, chat_body, sse_events


def test_sigterm_lets_a_stream_in_flight_finish(policy_path, workdir, fake):
    s = SluiceProcess(policy_path, workdir=workdir)
    try:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body("fake-stream-slow", stream=True)),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        lines = [resp.readline()]  # the first event is on its way: the request is in flight
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # New connections are refused while the old request drains.
        refused = False
        try:
            socket.create_connection((s.host, s.port), timeout=1).close()
        except OSError:
            refused = True
        assert refused, "the listener still accepts connections after SIGTERM"
        while True:
            line = resp.readline()
            if not line:
                break
            lines.append(line)
        events = sse_events(lines)
        assert events and events[-1] == "[DONE]", events[-3:]
        assert not any('"error"' in e for e in events), events
        assert resp.getheader("connection", "").lower() in ("", "close", "keep-alive")
        assert s.proc.wait(10) == 0
    finally:
        s.stop()
