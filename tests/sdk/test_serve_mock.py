"""The README's snippet, as written, against `meridian serve --mock`: a new
user's first call, with the official SDKs and no provider account or key.

Run after `cargo build --workspace --bins`:

    target/sdk-venv/bin/python -m pytest -q tests/sdk   # scripts/test makes the venv
"""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import anthropic
import pytest
from openai import OpenAI

from stack import binary, first_line, stop

PROVIDER_VARS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY",
                 "GROQ_API_KEY", "DASHSCOPE_API_KEY", "GEMINI_API_KEY"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API address of a `meridian serve --mock` run in an empty directory."""
    cwd = tmp_path_factory.mktemp("serve-mock")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS and k != "RUST_LOG"}
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy)
    with open(cwd / "meridian.log", "w") as log:
        proc = subprocess.Popen(
            [binary("MERIDIAN_BIN", "meridian"), "serve", "--mock",
             "--listen-api", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    try:
        line = first_line(proc, "meridian serve --mock")
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        yield fields["api"]
    finally:
        stop(proc)
    assert not (cwd / "data").exists(), "--mock wrote ./data"


def test_the_readme_snippet_answers_with_no_provider_account(api: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    client = OpenAI(base_url=f"{api}/v1", api_key="unused-without-keys")
    chat = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content

    claude = anthropic.Anthropic(base_url=api, api_key="unused-without-keys")
    message = claude.messages.create(model="claude-sonnet-4-0", max_tokens=256,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text

    stream = client.chat.completions.create(model="smart", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
