#!/usr/bin/env python3
"""A scripted fake Anthropic Messages upstream for Sluice's integration tests.

The HTTP/1.1 plumbing is fake_openai.py's; this speaks Anthropic's wire protocol on POST .../messages: it
requires `x-api-key` and `anthropic-version` (401 authentication_error / 400 invalid_request_error without them,
as Anthropic does), answers `{"type":"message",...}` with Anthropic's usage (input_tokens excluding the cached
parts), streams `event: NAME\\ndata: JSON\\n\\n` events (message_start, content_block_start, ping,
content_block_delta..., content_block_stop, message_delta, message_stop) and errors in Anthropic's shape
`{"type":"error","error":{"type":...,"message":...}}`. What it does is chosen by the upstream model name, a
comma-separated list of directives:

  ok                  a normal answer (the default)
  status:N            answer HTTP N with an Anthropic error body (401's message contains "sk-secret-FRAGMENT";
                      529 is overloaded_error)
  usage-cached        usage with cache_read_input_tokens 1536 and cache_creation_input_tokens 256 (input_tokens 208)
  stop-sequence       stop_reason "stop_sequence", stop_sequence = the request's first stop sequence
  max-tokens          stop_reason "max_tokens"
  error-mid-stream    a stream sends two text deltas, then an `error` event (overloaded_error) and ends
  drop-mid-stream     a stream sends two text deltas, then closes the connection without message_stop
  flaky:N             the first N requests naming this exact model answer 529 overloaded_error

Every request is recorded as fake_openai.py records them (GET/DELETE /_fake/requests).
On start it prints `fake_anthropic: listening on http://HOST:PORT`.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_openai import FRAGMENT, FakeUpstream, REASONS, parse_directives  # noqa: E402

REASONS.setdefault(529, "Overloaded")
REASONS.setdefault(413, "Request Entity Too Large")
REASONS.setdefault(403, "Forbidden")
PIECES = ["Hello", " from", " the", " fake", " Claude"]
USAGE_OK = {"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7}
USAGE_CACHED = {"input_tokens": 208, "cache_creation_input_tokens": 256, "cache_read_input_tokens": 1536,
                "output_tokens": 7}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error_body(status, message):
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


class FakeAnthropic(FakeUpstream):
    async def dispatch(self, reader, writer, method, target, version, headers, hmap, body, keep_alive):
        path = target.split("?", 1)[0]
        if path == "/_fake/requests":
            return await super().dispatch(reader, writer, method, target, version, headers, hmap, body, keep_alive)
        record = {"id": self.next_id, "method": method, "path": path, "version": version, "headers": dict(hmap),
                  "header_list": headers, "body": body.decode("utf-8", "replace"), "json": None,
                  "received_at": time.time(), "chunk_times": [], "completed": False, "closed_early": False}
        self.next_id += 1
        self.records.append(record)
        try:
            record["json"] = json.loads(body) if body else None
        except ValueError:
            pass
        if not (path.endswith("/messages") and method == "POST"):
            await self.send_full(writer, 404, error_body(404, f"fake: no route {method} {path}"),
                                 keep_alive=keep_alive)
            return keep_alive
        if "x-api-key" not in hmap:
            await self.send_full(writer, 401, error_body(401, "x-api-key header is required"), keep_alive=keep_alive)
            return keep_alive
        if "anthropic-version" not in hmap:
            await self.send_full(writer, 400, error_body(400, "anthropic-version: header is required"),
                                 keep_alive=keep_alive)
            return keep_alive
        req = record["json"] if isinstance(record["json"], dict) else None
        if req is None or "max_tokens" not in req or not isinstance(req.get("messages"), list):
            await self.send_full(writer, 400, error_body(400, "fake: max_tokens and messages are required"),
                                 keep_alive=keep_alive)
            return keep_alive
        return await self.messages(reader, writer, record, req, keep_alive)

    async def messages(self, reader, writer, record, req, keep_alive):
        model = req.get("model", "ok")
        d = parse_directives(model)
        flaky = False
        if "flaky" in d:
            seen = self.flaky_seen.get(model, 0)
            self.flaky_seen[model] = seen + 1
            flaky = seen < int(d["flaky"])
        if "status" in d or flaky:
            status = 529 if flaky else int(d["status"])
            msg = f"invalid x-api-key {FRAGMENT}" if status == 401 else f"fake upstream status {status}"
            await self.send_full(writer, status, error_body(status, msg), keep_alive=keep_alive)
            record["completed"] = True
            return keep_alive
        usage = dict(USAGE_CACHED if "usage-cached" in d else USAGE_OK)
        stop_reason, stop_sequence = "end_turn", None
        if "stop-sequence" in d and req.get("stop_sequences"):
            stop_reason, stop_sequence = "stop_sequence", req["stop_sequences"][0]
        elif "max-tokens" in d:
            stop_reason = "max_tokens"
        mid = f"msg_fake{record['id']:06d}"
        if req.get("stream") is True:
            return await self.stream(writer, record, d, mid, model, usage, stop_reason, stop_sequence, keep_alive)
        answer = {"id": mid, "type": "message", "role": "assistant", "model": model,
                  "content": [{"type": "text", "text": "".join(PIECES)}], "stop_reason": stop_reason,
                  "stop_sequence": stop_sequence, "usage": usage}
        await self.send_full(writer, 200, answer, keep_alive=keep_alive)
        record["completed"] = True
        return keep_alive

    async def stream(self, writer, record, d, mid, model, usage, stop_reason, stop_sequence, keep_alive):
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                   ("transfer-encoding", "chunked"), ("request-id", f"req_fake_{record['id']}")]
        if not keep_alive:
            headers.append(("connection", "close"))
        writer.write(self.head(200, headers))
        start_usage = dict(usage, output_tokens=1)
        events = [("message_start", {"type": "message_start", "message": {
                      "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                      "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
                  ("ping", {"type": "ping"})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": p}}) for p in PIECES]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                      "usage": {"output_tokens": usage["output_tokens"]}}),
                   ("message_stop", {"type": "message_stop"})]
        cut_at = 5 if ("error-mid-stream" in d or "drop-mid-stream" in d) else None

        def frame(name, payload):
            data = f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        try:
            for i, (name, ev) in enumerate(events):
                if cut_at is not None and i == cut_at:
                    if "error-mid-stream" in d:
                        writer.write(frame("error", error_body(529, "Overloaded")) + b"0\r\n\r\n")
                        await writer.drain()
                        record["completed"] = True
                        return keep_alive
                    writer.close()
                    return False
                writer.write(frame(name, ev))
                await writer.drain()
                record["chunk_times"].append(time.time())
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, OSError):
            record["closed_early"] = True
            return False
        record["completed"] = True
        return keep_alive


async def main_async(host, port):
    fake = FakeAnthropic()
    server = await asyncio.start_server(fake.handle_connection, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"fake_anthropic: listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main():
    ap = argparse.ArgumentParser(description="scripted fake Anthropic Messages upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(main_async(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
