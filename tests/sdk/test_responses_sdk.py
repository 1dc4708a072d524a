"""The official `openai` Python SDK's Responses API against a real Meridian
node whose route has two upstreams that serve it: a conversation stays with
the upstream that made its first response (each mock holds only its own
responses and answers 404 for any other's), whichever the router would
otherwise pick.

Run after `cargo build --workspace --bins`:

    target/sdk-venv/bin/python -m pytest -q tests/sdk   # scripts/test makes the venv
"""

from __future__ import annotations

from typing import Iterator

import openai
import pytest

from stack import CLIENT_KEY, Stack, running

SERVES = "responses = true\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(
        tmp_path_factory,
        {"r1": (None, SERVES), "r2": (None, SERVES), "chat-only": (None, "")},
        # One tier of two targets: the router picks either for a new response.
        '[[routes]]\nmodel = "resp"\ntiers = [[{ upstream = "r1", model = "gpt-r" }, '
        '{ upstream = "r2", model = "gpt-r" }]]\n\n'
        '[[routes]]\nmodel = "resp-r1"\ntiers = [[{ upstream = "r1", model = "gpt-r" }]]\n\n'
        '[[routes]]\nmodel = "chat-only"\ntiers = [[{ upstream = "chat-only", model = "gpt-c" }]]\n\n',
    ) as running_stack:
        yield running_stack


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{stack.api}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)


def test_create_plain_and_streamed(stack: Stack) -> None:
    response = client(stack).responses.create(model="resp", input="Say hello.")
    assert response.status == "completed" and response.output_text
    upstream, _, own = response.id.partition("~")
    assert upstream in ("r1", "r2") and own

    events = list(client(stack).responses.create(model="resp", input="Say hello.", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert any(k == "response.output_text.delta" for k in kinds)
    completed = events[-1].response
    assert completed.id.partition("~")[0] in ("r1", "r2")
    assert events[0].response.id == completed.id
    assert completed.usage is not None and completed.usage.output_tokens > 0


def test_follow_ups_reach_the_upstream_that_made_the_first(stack: Stack) -> None:
    sdk = client(stack)
    # `resp` picks between r1 and r2 by their figures (r2, once measured,
    # while r1 keeps the pessimistic prior), so a conversation begun on r1
    # through `resp-r1` and continued through `resp` shows the pin winning
    # over the router's choice; one begun through `resp` is checked too.
    for opening in ["resp-r1", "resp"]:
        raw = sdk.responses.with_raw_response.create(model=opening, input="Start.")
        first = raw.parse()
        holder = raw.headers["x-meridian-upstream"]
        assert first.id.startswith(f"{holder}~")
        if opening == "resp-r1":
            assert holder == "r1"
        previous = first.id
        for turn in range(12):
            raw = sdk.responses.with_raw_response.create(
                model="resp", input=f"Turn {turn}.", previous_response_id=previous, stream=turn % 2 == 1
            )
            assert raw.headers["x-meridian-upstream"] == holder
            assert raw.headers["x-meridian-fallback"] == "false"
            if turn % 2 == 1:
                events = list(raw.parse())
                answer = events[-1].response
            else:
                answer = raw.parse()
            assert answer.previous_response_id == previous
            assert answer.id.startswith(f"{holder}~")
            previous = answer.id
    # r1 made one opening and its 12 follow-ups, however the router leant.
    assert stack.mocks["r1"].stats()["by_model"]["gpt-r"] >= 13


def test_calls_on_a_stored_response(stack: Stack) -> None:
    sdk = client(stack)
    made = sdk.responses.create(model="resp", input="Remember this.")
    got = sdk.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    items = sdk.responses.input_items.list(made.id)
    assert items.data
    deleted = sdk.responses.delete(made.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)


def test_ids_meridian_did_not_make_are_refused(stack: Stack) -> None:
    sdk = client(stack)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.retrieve("resp_not_tagged")
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve("nowhere~resp_1")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="resp", input="x", previous_response_id="resp_not_tagged")
    assert caught.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="chat-only", input="x")
    assert caught.value.code == "not_served"
