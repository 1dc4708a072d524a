"""The official `openai` Python SDK, unchanged, against a real Meridian node.

Meridian promises OpenAI compatibility: existing clients change only their
base URL and key. These tests hold it to that with the SDK itself: its
response parsing, its SSE reader, its base64 embeddings and, above all, its
mapping of statuses and error bodies to exception classes, which is what
applications actually catch.

Run after `cargo build --workspace --bins`:

    target/sdk-venv/bin/python -m pytest -q tests/sdk   # scripts/test makes the venv
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Iterator

import openai
import pytest

from stack import CLIENT_KEY, REGION, Stack, route, running


def client(stack: Stack, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{stack.api}/v1", api_key=key, max_retries=0, timeout=10)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(
        tmp_path_factory,
        {
            "main": (None, ""),
            "limited": ({"rate_limit_rate": 1.0, "retry_after_s": 2}, ""),
            "cut": ({"chunks": 8, "cut_after_chunks": 2}, ""),
            # Addressed as `deep/<model>` or `deep-ai/<model>`, no route.
            "deep": (None, 'aliases = ["deep-ai"]\nmodels = ["deep-chat"]'),
        },
        route("chat", ("main", "provider-chat"))
        + route("embed", ("main", "provider-embed"))
        + route("limited", ("limited", "provider-limited"))
        + route("cut", ("cut", "provider-cut")),
    ) as running_stack:
        yield running_stack


MESSAGES = [{"role": "user", "content": "Say hello through Meridian."}]


def test_chat_completion(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(model="chat", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "provider-chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_chat_completion_headers(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, extra_headers={"x-request-id": "sdk-req-1"}
    )
    assert raw.headers["x-meridian-upstream"] == "main"
    assert raw.headers["x-meridian-region"] == REGION
    assert raw.headers["x-meridian-attempts"] == "1"
    assert raw.headers["x-request-id"] == "sdk-req-1"
    assert raw.parse().model == "provider-chat"
    # The provider got its own key, never the client's.
    assert stack.mocks["main"].stats()["outcomes"]["unauthorized"] == 0


def test_streaming_with_usage(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 3, chunks
    assert "".join(content).strip()
    assert all(c.object == "chat.completion.chunk" and c.model == "provider-chat" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_models_list(stack: Stack) -> None:
    ids = {model.id for model in client(stack).models.list()}
    assert {"chat", "embed", "limited"} <= ids


def test_addressed_models_are_listed_retrieved_and_called(stack: Stack) -> None:
    owners = {model.id: model.owned_by for model in client(stack).models.list()}
    assert owners["deep/deep-chat"] == "deep"
    assert owners["chat"] == "meridian"
    assert client(stack).models.retrieve("deep/deep-chat").owned_by == "deep"
    for name in ["deep/deep-chat", "deep-ai/deep-chat"]:
        raw = client(stack).chat.completions.with_raw_response.create(model=name, messages=MESSAGES)
        assert raw.headers["x-meridian-upstream"] == "deep"
        assert raw.parse().model == "deep-chat"
    assert stack.mocks["deep"].stats()["by_model"]["deep-chat"] == 2
    with pytest.raises(openai.NotFoundError) as caught:
        client(stack).chat.completions.create(model="deep/other", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert "1 models" in caught.value.message


def test_embeddings_in_the_sdk_default_base64(stack: Stack) -> None:
    before = stack.mocks["main"].stats()["by_model"].get("provider-embed", 0)
    result = client(stack).embeddings.create(model="embed", input=["one", "two", "three"], dimensions=12)
    assert result.model == "provider-embed"
    assert [e.index for e in result.data] == [0, 1, 2]
    assert all(len(e.embedding) == 12 and isinstance(e.embedding[0], float) for e in result.data)
    assert stack.mocks["main"].stats()["by_model"]["provider-embed"] == before + 1


def test_malformed_json_is_a_400_openai_error(stack: Stack) -> None:
    request = urllib.request.Request(
        f"http://{stack.api}/v1/chat/completions",
        data=b'{"model": "chat", "messages": [',
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    error = json.load(caught.value)["error"]
    assert error["type"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]


def test_bad_requests_raise_bad_request_error(stack: Stack) -> None:
    sdk = client(stack)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.post("/chat/completions", body={"messages": MESSAGES}, cast_to=object)
    assert caught.value.status_code == 400 and caught.value.param == "model"

    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="chat", messages=MESSAGES, stream="yes")  # type: ignore[call-overload]
    assert caught.value.param == "stream"
    assert caught.value.type == "invalid_request_error"


def test_wrong_key_raises_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(stack, key="sk-wrong").chat.completions.create(model="chat", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_unknown_model_raises_not_found_error(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(stack).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


def test_rate_limited_route_raises_rate_limit_error(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(stack).chat.completions.create(model="limited", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert stack.mocks["limited"].stats()["outcomes"]["rate_limited"] >= 1


def test_cut_stream_raises_instead_of_ending_quietly(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(model="cut", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2, received
    assert caught.value.code == "stream_interrupted"
    assert stack.mocks["cut"].stats()["outcomes"]["cut"] >= 1
