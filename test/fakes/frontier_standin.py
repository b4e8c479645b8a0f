#!/usr/bin/env python3
"""A frontier-model stand-in for the HEADLINES task: an OpenAI-compatible server that answers with a fixed,
deterministic accuracy, so cascade benchmarks and tests can run without a real frontier API.

The answer: the request's HEADLINES query is the last "Q: <headline>\\nA:" segment of the prompt (legacy
/v1/completions) or of the last user message (/v1/chat/completions). Its gold label comes from
data/headlines/train.csv (rows `query,gold,id`, no header). Exactly round(accuracy * N) of the N rows are
answered with the gold label; the others get a wrong label. Which rows are wrong is decided by ranking the rows
by sha256(seed, query); the wrong label is picked by another hash among the three other labels. So the answers
are a pure function of (train.csv, --accuracy, --seed): a restart, a different client, or a different order
gives the same answers. A query not in train.csv is answered "none".

Completions text is " <label>" (leading space, as the few-shot prefix implies); chat content is "<label>";
finish_reason is "stop". usage.prompt_tokens = ceil(UTF-8 bytes of the prompt / 4) (chat: of all messages'
text content together, so the same text costs the same through either API), completion_tokens = 2.

HTTP/1.1 over asyncio streams, stdlib only: keep-alive, Content-Length or chunked request bodies, SSE streaming
(`stream: true`; with `stream_options.include_usage` a final usage chunk with "choices": []), then
`data: [DONE]`.

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
GET /_standin/stats -> {"requests": n, ...} (counters only; nothing is recorded per request).

  test/fakes/frontier_standin.py --port 0 [--accuracy 0.856] [--seed 0] [--latency-ms 0]

prints `frontier_standin: listening on http://127.0.0.1:PORT` on stdout when ready; SIGTERM/SIGINT stop it.
The default accuracy 0.856 is the published gpt-4-turbo figure on HEADLINES (FrugalGPT).
"""
import argparse
import asyncio
import csv
import hashlib
import json
import math
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data", "headlines", "train.csv"))
LABELS = ("up", "down", "neutral", "none")
UNKNOWN_ANSWER = "none"
COMPLETION_TOKENS = 2
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_QUERY_CANDIDATES = 8  # "Q: " occurrences tried from the end (a headline may itself contain "Q: ")

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


class BadRequest(Exception):
    pass


# ---- the oracle ------------------------------------------------------------------------------------------

def _h(seed, purpose, query):
    return hashlib.sha256(f"{seed}\x00{purpose}\x00{query}".encode("utf-8")).digest()


def load_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    for r in rows:
        if len(r) < 2 or r[1] not in LABELS:
            raise ValueError(f"{path}: bad row {r[:3]!r} (want query,gold,id with gold in {LABELS})")
    return [(r[0], r[1]) for r in rows]


class Oracle:
    """query -> answer label, fixed by (rows, accuracy, seed)."""

    def __init__(self, rows, accuracy, seed):
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError("accuracy must be in [0, 1]")
        gold = {}
        for q, g in rows:
            gold.setdefault(q, g)  # a duplicated query keeps its first label
        self.gold = gold
        n = len(gold)
        self.n_correct = round(accuracy * n)
        ranked = sorted(gold, key=lambda q: _h(seed, "rank", q))
        self.answers = dict(gold)
        for q in ranked[self.n_correct:]:
            others = [label for label in LABELS if label != gold[q]]
            self.answers[q] = others[int.from_bytes(_h(seed, "wrong", q)[:8], "big") % len(others)]

    def find_query(self, text):
        """The known query that `text` ends with (its last "Q: ...\\nA:" segment), or None."""
        if not isinstance(text, str):
            return None
        text = text.rstrip()
        end = len(text)
        for _ in range(MAX_QUERY_CANDIDATES):
            pos = text.rfind("Q: ", 0, end)
            if pos < 0:
                return None
            cand = text[pos:]
            if cand in self.answers:
                return cand
            end = pos + 2  # next search: an occurrence starting before pos
        return None

    def answer(self, text):
        q = self.find_query(text)
        return (self.answers[q], True) if q is not None else (UNKNOWN_ANSWER, False)


def estimate_tokens(text):
    return math.ceil(len(text.encode("utf-8")) / 4)


def content_text(content):
    """A chat message's text: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


# ---- the server ------------------------------------------------------------------------------------------

class Standin:
    def __init__(self, oracle, latency_s=0.0, model_name="gpt-4-turbo"):
        self.oracle = oracle
        self.latency_s = latency_s
        self.model_name = model_name
        self.next_id = 1
        self.stats = {"requests": 0, "chat": 0, "completions": 0, "streamed": 0, "unknown_queries": 0,
                      "bad_requests": 0}

    # HTTP/1.1 plumbing (same shape as fake_openai.py)

    async def read_request(self, reader):
        line = await reader.readline()
        if not line:
            return None
        while line in (b"\r\n", b"\n"):
            line = await reader.readline()
            if not line:
                return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line")
        method, target, version = parts
        hmap = {}
        while True:
            h = await reader.readline()
            if not h:
                raise BadRequest("eof in headers")
            if h in (b"\r\n", b"\n"):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("bad header line")
            hmap.setdefault(name.strip().lower(), value.strip())
        body = b""
        te = hmap.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise BadRequest("unsupported transfer-encoding")
            chunks, total = [], 0
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise BadRequest("body too large")
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            body = b"".join(chunks)
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            if n < 0 or n > MAX_BODY_BYTES:
                raise BadRequest("bad content-length")
            body = await reader.readexactly(n)
        keep_alive = hmap.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        return method, target, hmap, body, keep_alive

    @staticmethod
    def head(status, headers):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send_json(self, writer, status, doc, keep_alive):
        body = json.dumps(doc).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        if not keep_alive:
            headers.append(("connection", "close"))
        writer.write(self.head(status, headers) + body)
        await writer.drain()

    async def send_error(self, writer, status, message, keep_alive, param=None, code=None):
        self.stats["bad_requests"] += 1
        await self.send_json(writer, status, {"error": {"message": message, "type": "invalid_request_error",
                                                        "param": param, "code": code}}, keep_alive)

    async def handle_connection(self, reader, writer):
        try:
            while True:
                try:
                    req = await self.read_request(reader)
                except (BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    await self.send_error(writer, 400, "frontier_standin: bad request", keep_alive=False)
                    break
                if req is None:
                    break
                if not await self.dispatch(writer, *req):
                    break
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def dispatch(self, writer, method, target, hmap, body, keep_alive):
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/health":
            await self.send_json(writer, 200, {"status": "ok"}, keep_alive)
            return keep_alive
        if method == "GET" and path == "/_standin/stats":
            await self.send_json(writer, 200, self.stats, keep_alive)
            return keep_alive
        if method == "GET" and path == "/v1/models":
            await self.send_json(writer, 200, {"object": "list", "data": [
                {"id": self.model_name, "object": "model", "created": 1700000000, "owned_by": "standin"}]},
                keep_alive)
            return keep_alive
        if path not in ("/v1/chat/completions", "/v1/completions"):
            await self.send_error(writer, 404, f"frontier_standin: no route {method} {path}", keep_alive,
                                  code="unknown_url")
            return keep_alive
        if method != "POST":
            await self.send_error(writer, 405, f"frontier_standin: {path} takes POST", keep_alive)
            return keep_alive
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            await self.send_error(writer, 400, "The request body is not a JSON object.", keep_alive)
            return keep_alive
        chat = path.endswith("/chat/completions")
        if chat:
            msgs = req.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
                await self.send_error(writer, 400, "Missing required parameter: 'messages'.", keep_alive,
                                      param="messages")
                return keep_alive
            users = [m for m in msgs if m.get("role") == "user"]
            text = content_text(users[-1].get("content")) if users else ""
            prompt_bytes_text = "".join(content_text(m.get("content")) for m in msgs)
        else:
            prompt = req.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                await self.send_error(writer, 400, "Missing required parameter: 'prompt' (one string).",
                                      keep_alive, param="prompt")
                return keep_alive
            text = prompt_bytes_text = prompt

        label, known = self.oracle.answer(text)
        self.stats["requests"] += 1
        self.stats["chat" if chat else "completions"] += 1
        if not known:
            self.stats["unknown_queries"] += 1
        prompt_tokens = estimate_tokens(prompt_bytes_text)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": COMPLETION_TOKENS,
                 "total_tokens": prompt_tokens + COMPLETION_TOKENS}
        rid = self.next_id
        self.next_id += 1
        model = req.get("model") if isinstance(req.get("model"), str) else self.model_name
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if req.get("stream") is True:
            self.stats["streamed"] += 1
            include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return await self.stream(writer, chat, rid, model, label, usage, include_usage, keep_alive)
        created = int(time.time())
        if chat:
            doc = {"id": f"chatcmpl-standin{rid}", "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": label, "refusal": None},
                                "logprobs": None, "finish_reason": "stop"}],
                   "usage": usage, "system_fingerprint": "fp_standin"}
        else:
            doc = {"id": f"cmpl-standin{rid}", "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": 0, "text": " " + label, "logprobs": None, "finish_reason": "stop"}],
                   "usage": usage, "system_fingerprint": "fp_standin"}
        await self.send_json(writer, 200, doc, keep_alive)
        return keep_alive

    async def stream(self, writer, chat, rid, model, label, usage, include_usage, keep_alive):
        created = int(time.time())
        if chat:
            base = {"id": f"chatcmpl-standin{rid}", "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": "fp_standin"}

            def chunk(delta, finish=None):
                c = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
                if include_usage:
                    c["usage"] = None
                return c

            events = [chunk({"role": "assistant", "content": "", "refusal": None}), chunk({"content": label}),
                      chunk({}, "stop")]
        else:
            base = {"id": f"cmpl-standin{rid}", "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": "fp_standin"}

            def chunk(text, finish=None):
                c = dict(base, choices=[{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}])
                if include_usage:
                    c["usage"] = None
                return c

            events = [chunk(" " + label), chunk("", "stop")]
        if include_usage:
            events.append(dict(base, choices=[], usage=usage))
        payload = b"".join(f"data: {json.dumps(ev)}\n\n".encode() for ev in events) + b"data: [DONE]\n\n"
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                   ("transfer-encoding", "chunked")]
        if not keep_alive:
            headers.append(("connection", "close"))
        # One HTTP chunk per SSE event, all written at once: the answer is known, there is nothing to wait for.
        out = [self.head(200, headers)]
        for part in payload.split(b"\n\n")[:-1]:
            data = part + b"\n\n"
            out.append(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        out.append(b"0\r\n\r\n")
        writer.write(b"".join(out))
        await writer.drain()
        return keep_alive


async def main_async(args, oracle):
    standin = Standin(oracle, latency_s=args.latency_ms / 1000.0, model_name=args.model_name)
    server = await asyncio.start_server(standin.handle_connection, args.host, args.port, reuse_address=True,
                                        backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"frontier_standin: listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = a free port (default)")
    ap.add_argument("--accuracy", type=float, default=0.856, help="share of rows answered with the gold label")
    ap.add_argument("--seed", default="0", help="chooses which rows are answered wrong, and how")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="wait this long before each answer")
    ap.add_argument("--data", default=DEFAULT_DATA, help="the HEADLINES rows (query,gold,id CSV)")
    ap.add_argument("--model-name", default="gpt-4-turbo", help="the model /v1/models lists")
    args = ap.parse_args()
    try:
        oracle = Oracle(load_rows(args.data), args.accuracy, args.seed)
    except (OSError, ValueError) as e:
        sys.exit(f"frontier_standin: {e}")
    n = len(oracle.gold)
    print(f"frontier_standin: {n} queries, {oracle.n_correct} answered correctly "
          f"(accuracy {oracle.n_correct / max(n, 1):.4f}, seed {args.seed!r})", file=sys.stderr, flush=True)
    try:
        asyncio.run(main_async(args, oracle))
    except OSError as e:
        sys.exit(f"frontier_standin: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
