"""Bad requests: every malformed or mistyped request is a 400 in OpenAI's error shape and never reaches
the upstream; bodies over server.max_body_bytes are 413; wrong methods 405; unknown paths 404."""
import pytest

from conftest import (MAX_BODY_BYTES, RawConnection, assert_openai_error, request)

MSGS = '[{"role":"user","content":"hi"}]'

BAD_BODIES = {
    "truncated_json": '{"model":"gpt-fake","messages":[1,2,}',
    "trailing_garbage": '{"model":"gpt-fake","messages":' + MSGS + '} x',
    "not_json": "hello there",
    "empty_body": "",
    "top_level_array": "[" + MSGS + "]",
    "missing_messages": '{"model":"gpt-fake"}',
    "missing_model": '{"messages":' + MSGS + '}',
    "model_not_string": '{"model":5,"messages":' + MSGS + '}',
    "messages_not_array": '{"model":"gpt-fake","messages":"hi"}',
    "message_not_object": '{"model":"gpt-fake","messages":["hi"]}',
    "temperature_string": '{"model":"gpt-fake","messages":' + MSGS + ',"temperature":"hot"}',
    "stream_not_bool": '{"model":"gpt-fake","messages":' + MSGS + ',"stream":"yes"}',
    "max_tokens_string": '{"model":"gpt-fake","messages":' + MSGS + ',"max_tokens":"10"}',
    # simdjson keeps the first, Python upstreams the last: the gateway must not pick one.
    "duplicate_model": '{"model":"fake-500","model":"gpt-fake","messages":' + MSGS + '}',
    "duplicate_messages": '{"model":"gpt-fake","messages":' + MSGS + ',"messages":' + MSGS + '}',
    "invalid_utf8": b'{"model":"gpt-fake","messages":[{"role":"user","content":"\xff\xfe"}]}',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_request_is_400_and_never_forwarded(sluice, fake, name):
    status, _, body = request(sluice, "POST", "/v1/chat/completions", BAD_BODIES[name])
    assert_openai_error(status, body, 400, "invalid_request_error")
    assert fake.requests() == [], f"{name} reached the upstream"


def test_body_over_limit_is_413(sluice, fake):
    big = '{"model":"gpt-fake","messages":[{"role":"user","content":"' + "a" * (MAX_BODY_BYTES + 1024) + '"}]}'
    status, _, body = request(sluice, "POST", "/v1/chat/completions", big)
    assert_openai_error(status, body, 413)
    assert fake.requests() == []


def test_chunked_body_over_limit_is_413(sluice, fake):
    with RawConnection(sluice) as c:
        head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: sluice.test\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")
        prefix = b'{"model":"gpt-fake","messages":[{"role":"user","content":"'
        piece = b"b" * 8192
        body = b"%x\r\n" % len(prefix) + prefix + b"\r\n"
        body += b"".join(b"2000\r\n" + piece + b"\r\n" for _ in range(MAX_BODY_BYTES // 8192 + 2))
        try:
            c.send(head.encode() + body + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.response()
    assert r is not None, "connection closed without a response"
    assert_openai_error(r.status, r.body, 413)
    assert fake.requests() == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/chat/completions"), ("PUT", "/v1/chat/completions"),
                                         ("POST", "/v1/models"), ("DELETE", "/v1/models")])
def test_wrong_method_is_405(sluice, fake, method, path):
    status, _, body = request(sluice, method, path, "{}" if method in ("PUT", "POST") else None)
    assert_openai_error(status, body, 405)
    assert fake.requests() == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/nope"), ("POST", "/v2/chat/completions"),
                                         ("GET", "/")])
def test_unknown_path_is_404(sluice, method, path):
    status, _, body = request(sluice, method, path, "{}" if method == "POST" else None)
    assert_openai_error(status, body, 404)


# Nested objects are forwarded verbatim: a repeated key at any depth would be read one way here and the other
# way upstream (Python keeps the last value), so it is refused, naming the field path.
NESTED_DUPLICATES = [
    ('{"model":"gpt-fake","messages":' + MSGS + ',"response_format":{"type":"text","type":"json_object"}}',
     "response_format.type"),
    ('{"model":"gpt-fake","messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}',
     "messages[0].content[0].text"),
    ('{"model":"gpt-fake","messages":' + MSGS + ',"tools":[{"type":"function","function":{"name":"f",'
     '"parameters":{"type":"object","properties":{"q":{"type":"string"},"q":{"type":"integer"}}}}}]}',
     "tools[0].function.parameters.properties.q"),
    ('{"model":"gpt-fake","messages":' + MSGS + ',"stream":true,"stream_options":{"include_usage":true,'
     '"include_usage":false}}', "stream_options.include_usage"),
]


@pytest.mark.parametrize("body,param", NESTED_DUPLICATES, ids=[p for _, p in NESTED_DUPLICATES])
def test_nested_duplicate_key_is_400_naming_the_path(sluice, fake, body, param):
    status, _, raw = request(sluice, "POST", "/v1/chat/completions", body)
    err = assert_openai_error(status, raw, 400, "invalid_request_error")
    assert err["param"] == param, err
    assert param in err["message"], err
    assert fake.requests() == [], "a request with a repeated key reached the upstream"
