"""A key's limits as the official SDKs see them, unchanged: a model outside
the key's allowlist raises PermissionDeniedError, a key over its requests
per minute RateLimitError, and a key whose credits are spent RateLimitError
with OpenAI's `insufficient_quota` code, in the `openai` and `anthropic`
SDKs alike.

Run after `cargo build --workspace --bins`:

    python3 -m pytest -q tests/sdk
"""

from __future__ import annotations

from typing import Iterator

import anthropic
import openai
import pytest

from stack import Stack, route, running

ALLOW = "sk-sdk-allowlist-0123"
RPM = "sk-sdk-rpm-one-0123"
BROKE = "sk-sdk-credits-0123"
KEYS = (
    '[[keys]]\nname = "allow"\nkey_env = "SDK_ALLOW_KEY"\nmodels = ["fast"]\n\n'
    '[[keys]]\nname = "rpm"\nkey_env = "SDK_RPM_KEY"\nrpm = 1\n\n'
    '[[keys]]\nname = "broke"\nkey_env = "SDK_BROKE_KEY"\ncredits_usd = 1.0\n\n'
)
# A dollar a token: the first answer spends the dollar of `broke`.
PRICED = (
    '[[routes]]\nmodel = "priced"\ntiers = [[{ upstream = "oai", model = "gpt-x", '
    "input_per_mtok = 1000000.0, output_per_mtok = 1000000.0 }]]\n\n"
)
MESSAGES = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(
        tmp_path_factory,
        {"oai": (None, "")},
        route("fast", ("oai", "gpt-x")) + route("big", ("oai", "gpt-y")) + PRICED,
        keys=KEYS,
        key_env={"SDK_ALLOW_KEY": ALLOW, "SDK_RPM_KEY": RPM, "SDK_BROKE_KEY": BROKE},
    ) as running_stack:
        yield running_stack


def gpt(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{stack.api}/v1", api_key=key, max_retries=0, timeout=10)


def claude(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://{stack.api}", api_key=key, max_retries=0, timeout=10)


def test_openai_sdk_raises_permission_denied_outside_the_allowlist(stack: Stack) -> None:
    client = gpt(stack, ALLOW)
    client.chat.completions.create(model="fast", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="big", messages=MESSAGES)
    assert denied.value.status_code == 403
    assert denied.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == ["fast"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("big")


def test_anthropic_sdk_raises_permission_denied_outside_the_allowlist(stack: Stack) -> None:
    client = claude(stack, ALLOW)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="big", max_tokens=16, messages=MESSAGES)


def test_both_sdks_raise_rate_limit_errors_over_rpm(stack: Stack) -> None:
    raw = gpt(stack, RPM).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as limited:
        gpt(stack, RPM).chat.completions.create(model="fast", messages=MESSAGES)
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1
    with pytest.raises(anthropic.RateLimitError):
        claude(stack, RPM).messages.create(model="fast", max_tokens=16, messages=MESSAGES)


def test_spent_credits_raise_insufficient_quota(stack: Stack) -> None:
    client = gpt(stack, BROKE)
    client.chat.completions.create(model="priced", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as spent:
        client.chat.completions.create(model="priced", messages=MESSAGES)
    assert spent.value.code == "insufficient_quota"
    assert "retry-after" not in spent.value.response.headers
    with pytest.raises(anthropic.RateLimitError) as spent:
        claude(stack, BROKE).messages.create(model="priced", max_tokens=16, messages=MESSAGES)
    assert "credits" in str(spent.value)
