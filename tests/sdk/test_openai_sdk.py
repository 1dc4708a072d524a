"""The official `openai` Python SDK, unchanged, against a real Meridian node.

Meridian promises OpenAI compatibility: existing clients change only their
base URL and key. These tests hold it to that with the SDK itself: its
response parsing, its SSE reader, its base64 embeddings and, above all, its
mapping of statuses and error bodies to exception classes, which is what
applications actually catch.

Run after `cargo build --workspace --bins`:

    python3 -m pytest -q tests/sdk

The binaries are taken from `target/debug/` (or `$CARGO_TARGET_DIR/debug/`);
`MERIDIAN_BIN` and `MERIDIAN_MOCK_BIN` name others.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
CLIENT_KEY = "sk-sdk-client-0123"
PROVIDER_KEY = "sk-sdk-provider"
REGION = "sdk-region"
STARTUP_TIMEOUT_S = 20


def binary(env: str, name: str) -> str:
    path = Path(os.environ.get(env) or TARGET / name)
    if not path.is_file():
        pytest.fail(f"{path} not found: run `cargo build --workspace --bins` or set {env}")
    return str(path)


def first_line(proc: subprocess.Popen[str], what: str) -> str:
    """The process's first stdout line, failing the run if it never comes."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        pytest.fail(f"{what} printed nothing in {STARTUP_TIMEOUT_S} s")
    if not line:
        pytest.fail(f"{what} exited with {proc.wait()} before it was ready")
    return line


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def control(method: str, url: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@dataclass
class Mock:
    """A `meridian-mock` process."""

    proc: subprocess.Popen[str]
    api: str
    control: str

    @classmethod
    def start(cls, behavior: dict | None = None) -> Mock:
        proc = subprocess.Popen(
            [
                binary("MERIDIAN_MOCK_BIN", "meridian-mock"),
                "--listen", "127.0.0.1:0",
                "--control", "127.0.0.1:0",
                "--api-key", PROVIDER_KEY,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = json.loads(first_line(proc, "meridian-mock"))
        mock = cls(proc, line["api"], line["control"])
        if behavior:
            mock.behave(behavior)
        return mock

    def behave(self, patch: dict) -> None:
        control("PATCH", f"http://{self.control}/_mock/behavior", patch)

    def stats(self) -> dict:
        return control("GET", f"http://{self.control}/_mock/stats")

    def upstream(self, id: str) -> str:
        return (
            f'[[upstreams]]\nid = "{id}"\nbase_url = "http://{self.api}/v1"\n'
            f'api_key_env = "SDK_PROVIDER_KEY"\n\n'
        )


@dataclass
class Stack:
    """A Meridian node in front of its mocks."""

    api: str
    mocks: dict[str, Mock]
    log: Path

    def client(self, key: str = CLIENT_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://{self.api}/v1", api_key=key, max_retries=0, timeout=10)


def route(model: str, upstream: str, provider_model: str) -> str:
    return (
        f'[[routes]]\nmodel = "{model}"\n'
        f'tiers = [[{{ upstream = "{upstream}", model = "{provider_model}" }}]]\n\n'
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Loopback must never go through a proxy the environment names.
    with pytest.MonkeyPatch.context() as env:
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        env.setenv("NO_PROXY", no_proxy)
        env.setenv("no_proxy", no_proxy)
        mocks: dict[str, Mock] = {}
        node = None
        try:
            mocks["main"] = Mock.start()
            mocks["limited"] = Mock.start({"rate_limit_rate": 1.0, "retry_after_s": 2})
            mocks["cut"] = Mock.start({"chunks": 8, "cut_after_chunks": 2})
            dir = tmp_path_factory.mktemp("meridian")
            config = (
                f'[node]\nid = 1\nregion = "{REGION}"\ndata_dir = "{dir / "data"}"\n\n'
                '[listen]\napi = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\nraft = "127.0.0.1:0"\n\n'
                '[[keys]]\nname = "sdk"\nkey_env = "SDK_CLIENT_KEY"\n\n'
                + mocks["main"].upstream("main")
                + mocks["limited"].upstream("limited")
                + mocks["cut"].upstream("cut")
                + route("chat", "main", "provider-chat")
                + route("embed", "main", "provider-embed")
                + route("limited", "limited", "provider-limited")
                + route("cut", "cut", "provider-cut")
            )
            (dir / "meridian.toml").write_text(config)
            log = dir / "meridian.log"
            node = subprocess.Popen(
                [binary("MERIDIAN_BIN", "meridian"), "serve", "--config", str(dir / "meridian.toml")],
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
                env={**os.environ, "SDK_CLIENT_KEY": CLIENT_KEY, "SDK_PROVIDER_KEY": PROVIDER_KEY},
            )
            line = first_line(node, "meridian")
            fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
            assert line.startswith("meridian ready:") and fields["region"] == REGION, line
            yield Stack(fields["api"].removeprefix("http://"), mocks, log)
        finally:
            for proc in [node, *(m.proc for m in mocks.values())]:
                if proc is not None:
                    stop(proc)


MESSAGES = [{"role": "user", "content": "Say hello through Meridian."}]


def test_chat_completion(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(model="chat", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "provider-chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_chat_completion_headers(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
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
    stream = stack.client().chat.completions.create(
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
    ids = {model.id for model in stack.client().models.list()}
    assert {"chat", "embed", "limited"} <= ids


def test_embeddings_in_the_sdk_default_base64(stack: Stack) -> None:
    before = stack.mocks["main"].stats()["by_model"].get("provider-embed", 0)
    result = stack.client().embeddings.create(model="embed", input=["one", "two", "three"], dimensions=12)
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
    client = stack.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"messages": MESSAGES}, cast_to=object)
    assert caught.value.status_code == 400 and caught.value.param == "model"

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=MESSAGES, stream="yes")  # type: ignore[call-overload]
    assert caught.value.param == "stream"
    assert caught.value.type == "invalid_request_error"


def test_wrong_key_raises_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        stack.client(key="sk-wrong").chat.completions.create(model="chat", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_unknown_model_raises_not_found_error(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        stack.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


def test_rate_limited_route_raises_rate_limit_error(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        stack.client().chat.completions.create(model="limited", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert stack.mocks["limited"].stats()["outcomes"]["rate_limited"] >= 1


def test_cut_stream_raises_instead_of_ending_quietly(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(model="cut", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2, received
    assert caught.value.code == "stream_interrupted"
    assert stack.mocks["cut"].stats()["outcomes"]["cut"] >= 1
