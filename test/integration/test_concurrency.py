"""Many keep-alive connections at once (the test policy runs 2 io threads): every request must get its
200, and no connection may be dropped or left hanging. With a multi-threaded io_context, I/O objects
shared between connections (e.g. pooled upstream connections) need a strand; races show up here as a
connection closed between two responses or a request that is never answered."""
import collections
import json
import socket
import threading
import time

from conftest import chat_body, post_raw, read_response

CONNECTIONS = 32
DURATION_S = 4.0
ANSWER_TIMEOUT_S = 3.0  # the fake answers in milliseconds; 3 s without an answer is a hang


def test_parallel_keep_alive_connections_all_answered(sluice, fake):
    req = post_raw("/v1/chat/completions", json.dumps(chat_body("gpt-fake")))
    outcomes = collections.Counter()
    problems = []
    lock = threading.Lock()
    end = time.monotonic() + DURATION_S

    def worker():
        while time.monotonic() < end:
            with socket.create_connection((sluice.host, sluice.port), timeout=ANSWER_TIMEOUT_S) as s:
                f = s.makefile("rb")
                served = 0
                while time.monotonic() < end:
                    try:
                        s.sendall(req)
                        r = read_response(f)
                    except (socket.timeout, TimeoutError):
                        with lock:
                            problems.append(f"no answer within {ANSWER_TIMEOUT_S}s (request {served + 1} "
                                            "on its connection)")
                        return
                    except OSError as e:
                        with lock:
                            problems.append(f"{e!r} after {served} answers on the connection")
                        break
                    if r is None:
                        with lock:
                            problems.append(f"connection closed after {served} answers, no Connection: close")
                        break
                    served += 1
                    with lock:
                        outcomes[r.status] += 1
                    if r.status != 200:
                        with lock:
                            problems.append(f"status {r.status}: {r.body[:200]!r}")
                    if (r.header("connection") or "").lower() == "close":
                        break

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes[200] > 0
    assert not problems, f"{len(problems)} problems in {sum(outcomes.values())} answers: {problems[:5]}"
