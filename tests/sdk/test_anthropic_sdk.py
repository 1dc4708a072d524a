"""The official `anthropic` Python SDK, unchanged, against a real Meridian
node: served by an OpenAI-compatible upstream (translated both ways) and by
a native Anthropic one (passed through), plain, streamed, with tools, and
raising its own exception classes. Also the `openai` SDK against a native
Anthropic upstream.

Run after `cargo build --workspace --bins`:

    target/sdk-venv/bin/python -m pytest -q tests/sdk   # scripts/test makes the venv
"""

from __future__ import annotations

from typing import Iterator

import anthropic
import openai
import pytest

from stack import CLIENT_KEY, Stack, route, running

NATIVE = 'kind = "anthropic"\n'
MODELS = ["claude-oai", "claude-native"]
UPSTREAM = {"claude-oai": "oai", "claude-native": "nat"}
MESSAGES = [{"role": "user", "content": "Say hello through Meridian."}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(
        tmp_path_factory,
        {
            "oai": (None, ""),
            "nat": (None, NATIVE),
            "overloaded": ({"error_rate": 1.0, "error_status": 529}, NATIVE),
            "limited": ({"rate_limit_rate": 1.0, "retry_after_s": 2}, NATIVE),
        },
        route("claude-oai", ("oai", "gpt-x"))
        + route("claude-native", ("nat", "claude-x"))
        + route("premium", ("overloaded", "claude-x"), ("oai", "gpt-x"))
        + route("overloaded", ("overloaded", "claude-x"))
        + route("limited", ("limited", "claude-x")),
    ) as running_stack:
        yield running_stack


def claude(stack: Stack, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://{stack.api}", api_key=key, max_retries=0, timeout=10)


@pytest.mark.parametrize("model", MODELS)
def test_messages_create_with_a_system_prompt(stack: Stack, model: str) -> None:
    raw = claude(stack).messages.with_raw_response.create(
        model=model, max_tokens=64, system="Be brief.", messages=MESSAGES
    )
    assert raw.headers["x-meridian-upstream"] == UPSTREAM[model]
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_a_base_url_ending_in_v1_works_too(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=f"http://{stack.api}/v1", api_key=CLIENT_KEY, max_retries=0)
    message = client.messages.create(model="claude-native", max_tokens=64, messages=MESSAGES)
    assert message.content[0].text


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_text_and_final_usage(stack: Stack, model: str) -> None:
    with claude(stack).messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) >= 2 and "".join(texts).strip()
    assert final.content[0].text == "".join(texts)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_round_trip(stack: Stack, model: str) -> None:
    client = claude(stack)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=64, tools=[WEATHER], messages=question)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "mock"}
    second = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "sunny, 21 C" in second.content[0].text


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_tool_call_is_assembled_by_the_sdk(stack: Stack, model: str) -> None:
    with claude(stack).messages.stream(
        model=model, max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input == {"city": "mock"}


def test_count_tokens_on_a_native_route(stack: Stack) -> None:
    counted = claude(stack).messages.count_tokens(model="claude-native", messages=MESSAGES)
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        claude(stack).messages.count_tokens(model="claude-oai", messages=MESSAGES)


def test_error_classes(stack: Stack) -> None:
    client = claude(stack)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="claude-oai",
            max_tokens=2048,
            messages=MESSAGES,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert "thinking" in str(bad.value)
    with pytest.raises(anthropic.AuthenticationError):
        claude(stack, key="sk-wrong-key-0000").messages.create(model="claude-oai", max_tokens=8, messages=MESSAGES)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-9", max_tokens=8, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="limited", max_tokens=8, messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "2"
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model="overloaded", max_tokens=8, messages=MESSAGES)


def test_a_native_529_fails_over_to_an_openai_target(stack: Stack) -> None:
    raw = claude(stack).messages.with_raw_response.create(model="premium", max_tokens=64, messages=MESSAGES)
    assert raw.headers["x-meridian-fallback"] == "true"
    assert raw.headers["x-meridian-upstream"] == "oai"
    assert raw.parse().content[0].text
    with claude(stack).messages.stream(model="premium", max_tokens=64, messages=MESSAGES) as stream:
        assert stream.response.headers["x-meridian-fallback"] == "true"
        assert "".join(stream.text_stream).strip()


def gpt(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{stack.api}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)


def test_the_openai_sdk_against_a_native_anthropic_upstream(stack: Stack) -> None:
    client = gpt(stack)
    chat = client.chat.completions.create(
        model="claude-native",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
    )
    assert chat.object == "chat.completion" and chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None and chat.usage.prompt_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="claude-native", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    called = client.chat.completions.create(model="claude-native", messages=MESSAGES, tools=tools)
    assert called.choices[0].finish_reason == "tool_calls"
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"mock"}'
