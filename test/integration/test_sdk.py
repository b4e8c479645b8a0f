"""The official OpenAI Python SDK pointed at Sluice: plain and streaming completions work unmodified, bad
requests raise the SDK's own exceptions, and an upstream cut mid-stream raises instead of looking like a
short answer."""
import openai
import pytest

from conftest import UPSTREAM_KEY

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


@pytest.fixture()
def client(sluice):
    # Any key: Sluice holds the upstream key itself. No retries, so errors surface once.
    return openai.OpenAI(base_url=f"http://{sluice.host}:{sluice.port}/v1", api_key="sk-client-side",
                         max_retries=0, timeout=10)


def test_sdk_plain_completion(client, fake):
    raw = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=MESSAGES)
    assert raw.headers.get("x-sluice-tier") == "gpt-fake"
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hello from the fake"
    assert resp.usage.prompt_tokens == 21 and resp.usage.completion_tokens == 7
    up = fake.requests()[0]
    assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # never the client's key


def test_sdk_streaming_completion_with_usage(client):
    stream = client.chat.completions.create(model="gpt-fake", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "Hello from the fake"
    assert usage is not None and usage.total_tokens == 28


def test_sdk_invalid_request_raises_bad_request(client, fake):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-fake", messages=MESSAGES, temperature="hot")
    assert e.value.status_code == 400
    assert fake.requests() == []


def test_sdk_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)


def test_sdk_stream_cut_raises(client):
    stream = client.chat.completions.create(model="fake-drop", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_sdk_lists_models(client):
    ids = {m.id for m in client.models.list()}
    assert "gpt-fake" in ids


def test_sdk_retrieves_a_model(client):
    m = client.models.retrieve("gpt-fake")
    assert m.id == "gpt-fake" and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
