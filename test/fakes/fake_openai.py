#!/usr/bin/env python3
"""A scripted fake OpenAI-compatible upstream for Sluice's integration tests.

It speaks real HTTP/1.1 over asyncio streams (keep-alive, Content-Length or chunked request bodies,
Content-Length or chunked responses, SSE framing `data: ...\\n\\n`), stdlib only. What it does for a chat
completion is chosen by the *upstream model name* it receives: a comma-separated list of directives,
e.g. "ok", "slow:2000", "status:401", "stream-delay:150,chunks:20".

Directives:
  ok                  a normal answer (the default for any unknown name)
  slow:MS             wait MS before sending the response head
  status:N            answer HTTP N with an OpenAI error body (401's body contains "sk-secret-FRAGMENT")
  reset               close the connection with a TCP RST instead of answering
  malformed-json      200 with a body that is not JSON
  drop-mid-stream     send the head and two chunks (stream or not), then close without finishing
  reset-mid-stream    like drop-mid-stream but with a TCP RST
  stream-delay:MS     wait MS between stream chunks
  chunks:N            number of content chunks in a stream (default 4)
  usage-cached        usage carries prompt_tokens_details.cached_tokens
  chunked-response    send a non-stream answer with Transfer-Encoding: chunked instead of Content-Length
  header:NAME=VALUE   add this header to the answer's head (any status, stream or not); may be repeated
  content-bytes:N     each content piece is N characters long (its text repeated), for large streams
  flaky:N             the first N requests naming this exact model string (since the last reset) answer with an
                      error status (flaky-status:S, default 503); later ones follow the other directives

Every request is recorded (method, path, headers, body, parsed JSON, timings, whether the client closed
the connection before the answer was complete). GET /_fake/requests returns the records as JSON;
DELETE /_fake/requests clears them. On start it prints `fake_openai: listening on http://HOST:PORT`.

What must not go in here: anything Sluice-specific beyond the OpenAI wire format; this stays a dumb,
predictable upstream so tests assert what the gateway does, not what the fake guesses.
"""
import argparse
import asyncio
import json
import signal
import socket
import struct
import sys
import time

FRAGMENT = "sk-secret-FRAGMENT"
CONTENT_PIECES = ["Hello", " from", " the", " fake", " upstream", ".", " More", " words", " follow", " here"]
USAGE_OK = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
USAGE_CACHED = {
    "prompt_tokens": 2000,
    "completion_tokens": 7,
    "total_tokens": 2007,
    "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
MAX_BODY_BYTES = 64 * 1024 * 1024

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class BadRequest(Exception):
    pass


def parse_directives(model):
    d = {"ok": True}
    for part in str(model).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, arg = part.partition(":")
        if name == "header":
            d.setdefault("header", []).append(tuple(arg.split("=", 1)) if "=" in arg else (arg, ""))
            continue
        d[name] = arg if arg else True
    return d


class FakeUpstream:
    def __init__(self):
        self.records = []
        self.next_id = 1
        self.flaky_seen = {}  # model string -> requests seen (flaky:N)

    # ---- HTTP/1.1 plumbing ----------------------------------------------------------------------

    async def read_request(self, reader):
        line = await reader.readline()
        if not line:
            return None
        while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests (RFC 9112 2.2)
            line = await reader.readline()
            if not line:
                return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line")
        method, target, version = parts
        headers = []
        while True:
            h = await reader.readline()
            if not h:
                raise BadRequest("eof in headers")
            if h in (b"\r\n", b"\n"):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("bad header line")
            headers.append((name.strip().lower(), value.strip()))
        hmap = {}
        for k, v in headers:
            hmap.setdefault(k, v)
        body = b""
        te = hmap.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise BadRequest("unsupported transfer-encoding")
            chunks = []
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            body = b"".join(chunks)
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            if n > MAX_BODY_BYTES:
                raise BadRequest("body too large")
            body = await reader.readexactly(n)
        keep_alive = hmap.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        return method, target, version, headers, hmap, body, keep_alive

    @staticmethod
    def head(status, headers):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send_full(self, writer, status, body, content_type="application/json", keep_alive=True,
                        chunked=False, extra=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        headers = [("content-type", content_type), ("x-request-id", f"req_fake_{self.next_id}")]
        headers += list(extra)
        if not keep_alive:
            headers.append(("connection", "close"))
        if chunked:
            headers.append(("transfer-encoding", "chunked"))
            half = len(body) // 2
            payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:half], body[half:]) if p)
            writer.write(self.head(status, headers) + payload + b"0\r\n\r\n")
        else:
            headers.append(("content-length", str(len(body))))
            writer.write(self.head(status, headers) + body)
        await writer.drain()

    @staticmethod
    def client_gone(reader, writer):
        return reader.at_eof() or writer.transport.is_closing()

    @staticmethod
    def abort_with_rst(writer):
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()

    # ---- connection loop --------------------------------------------------------------------------

    async def handle_connection(self, reader, writer):
        try:
            while True:
                try:
                    req = await self.read_request(reader)
                except (BadRequest, ValueError, asyncio.IncompleteReadError):
                    await self.send_full(writer, 400, {"error": {"message": "fake: bad request", "type":
                                                                 "invalid_request_error", "param": None,
                                                                 "code": None}}, keep_alive=False)
                    break
                if req is None:
                    break
                keep_going = await self.dispatch(reader, writer, *req)
                if not keep_going:
                    break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown with idle keep-alive connections open: end quietly, no traceback
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def dispatch(self, reader, writer, method, target, version, headers, hmap, body, keep_alive):
        path = target.split("?", 1)[0]
        if path == "/_fake/requests":
            if method == "GET":
                await self.send_full(writer, 200, self.records, keep_alive=keep_alive)
            elif method == "DELETE":
                self.records.clear()
                self.flaky_seen.clear()
                await self.send_full(writer, 200, {"cleared": True}, keep_alive=keep_alive)
            else:
                await self.send_full(writer, 405, {"error": {"message": "method"}}, keep_alive=keep_alive)
            return keep_alive

        record = {
            "id": self.next_id,
            "method": method,
            "path": path,
            "version": version,
            "headers": dict(hmap),
            "header_list": headers,
            "body": body.decode("utf-8", "replace"),
            "json": None,
            "received_at": time.time(),
            "chunk_times": [],
            "completed": False,
            "closed_early": False,
        }
        self.next_id += 1
        self.records.append(record)
        try:
            record["json"] = json.loads(body) if body else None
        except ValueError:
            record["json"] = None

        if path.endswith("/models") and method == "GET":
            data = [{"id": n, "object": "model", "created": 1700000000, "owned_by": "fake"} for n in ("ok",)]
            await self.send_full(writer, 200, {"object": "list", "data": data}, keep_alive=keep_alive)
            record["completed"] = True
            return keep_alive
        if not (path.endswith("/chat/completions") and method == "POST"):
            await self.send_full(writer, 404, {"error": {"message": f"fake: no route {method} {path}",
                                                         "type": "invalid_request_error", "param": None,
                                                         "code": "unknown_url"}}, keep_alive=keep_alive)
            record["completed"] = True
            return keep_alive
        req = record["json"] if isinstance(record["json"], dict) else {}
        return await self.chat(reader, writer, record, req, keep_alive)

    # ---- chat completions ---------------------------------------------------------------------------

    async def chat(self, reader, writer, record, req, keep_alive):
        model = req.get("model", "ok")
        d = parse_directives(model)
        if "slow" in d:
            await asyncio.sleep(int(d["slow"]) / 1000.0)
            if self.client_gone(reader, writer):
                record["closed_early"] = True
                return False
        if "reset" in d:
            self.abort_with_rst(writer)
            return False
        flaky = False
        if "flaky" in d:
            seen = self.flaky_seen.get(model, 0)
            self.flaky_seen[model] = seen + 1
            flaky = seen < int(d["flaky"])
        if "status" in d or flaky:
            status = int(d.get("flaky-status", 503)) if flaky else int(d["status"])
            if status == 401:
                msg = f"Incorrect API key provided: {FRAGMENT}. You can find your API key at the dashboard."
                err = {"message": msg, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
            else:
                err = {"message": f"fake upstream status {status}", "type": "server_error", "param": None,
                       "code": None}
            await self.send_full(writer, status, {"error": err}, keep_alive=keep_alive, extra=d.get("header", ()))
            record["completed"] = True
            return keep_alive
        if "malformed-json" in d:
            await self.send_full(writer, 200, '{"id": "chatcmpl-broken", "choices": [{"message": ',
                                 keep_alive=keep_alive)
            record["completed"] = True
            return keep_alive

        created = int(time.time())
        cid = f"chatcmpl-fake{record['id']:06d}"
        usage = dict(USAGE_CACHED if "usage-cached" in d else USAGE_OK)
        n_chunks = int(d.get("chunks", 4))
        pieces = [CONTENT_PIECES[i % len(CONTENT_PIECES)] for i in range(n_chunks)]
        if "content-bytes" in d:
            n = int(d["content-bytes"])
            pieces = [(p * (n // len(p) + 1))[:n] for p in pieces]
        if req.get("stream") is True:
            return await self.stream(reader, writer, record, req, d, cid, created, model, pieces, usage, keep_alive)

        answer = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        if "drop-mid-stream" in d or "reset-mid-stream" in d:
            body = json.dumps(answer).encode()
            writer.write(self.head(200, [("content-type", "application/json"), ("content-length", str(len(body)))])
                         + body[: len(body) // 2])
            await writer.drain()
            if "reset-mid-stream" in d:
                await asyncio.sleep(0.1)
                self.abort_with_rst(writer)
            else:
                writer.close()
            return False
        await self.send_full(writer, 200, answer, keep_alive=keep_alive, chunked="chunked-response" in d,
                             extra=d.get("header", ()))
        record["completed"] = True
        return keep_alive

    async def stream(self, reader, writer, record, req, d, cid, created, model, pieces, usage, keep_alive):
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        delay_s = int(d.get("stream-delay", 0)) / 1000.0
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                   ("transfer-encoding", "chunked"), ("x-request-id", f"req_fake_{record['id']}")]
        headers += list(d.get("header", ()))
        if not keep_alive:
            headers.append(("connection", "close"))
        writer.write(self.head(200, headers))

        def chunk(delta, finish=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                c["usage"] = None
            return c

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": p}) for p in pieces]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "fp_fake", "choices": [], "usage": usage})
        drop_after = 2 if ("drop-mid-stream" in d or "reset-mid-stream" in d) else None

        def frame(payload):
            data = f"data: {payload}\n\n".encode()
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        try:
            for i, ev in enumerate(events):
                if drop_after is not None and i == drop_after:
                    if "reset-mid-stream" in d:
                        # Let the client read what was sent first: an RST discards unread received data.
                        await asyncio.sleep(0.1)
                        self.abort_with_rst(writer)
                    else:
                        writer.close()
                    return False
                if i > 0 and delay_s:
                    await asyncio.sleep(delay_s)
                if self.client_gone(reader, writer):
                    record["closed_early"] = True
                    return False
                writer.write(frame(json.dumps(ev)))
                await writer.drain()
                record["chunk_times"].append(time.time())
            if delay_s:
                await asyncio.sleep(delay_s)
            if self.client_gone(reader, writer):
                record["closed_early"] = True
                return False
            writer.write(frame("[DONE]") + b"0\r\n\r\n")
            await writer.drain()
            record["chunk_times"].append(time.time())
        except (ConnectionError, OSError):
            record["closed_early"] = True
            return False
        record["completed"] = True
        return keep_alive


async def main_async(host, port, tls_cert=None, tls_key=None):
    fake = FakeUpstream()
    ctx = None
    if tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_cert, tls_key)
    server = await asyncio.start_server(fake.handle_connection, host, port, reuse_address=True, ssl=ctx)
    bound = server.sockets[0].getsockname()
    scheme = "https" if ctx else "http"
    print(f"fake_openai: listening on {scheme}://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main():
    ap = argparse.ArgumentParser(description="scripted fake OpenAI-compatible upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    ap.add_argument("--tls-key", help="the certificate's PEM private key")
    args = ap.parse_args()
    asyncio.run(main_async(args.host, args.port, args.tls_cert, args.tls_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
