"""What the SDK suites share: the `meridian` and `meridian-mock` binaries,
started as real processes on loopback, and a node in front of its mocks.

The binaries are taken from `target/debug/` (or `$CARGO_TARGET_DIR/debug/`);
`MERIDIAN_BIN` and `MERIDIAN_MOCK_BIN` name others.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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

    def upstream(self, id: str, extra: str = "") -> str:
        """The `[[upstreams]]` entry of this mock; `extra` adds lines
        (`kind = "anthropic"`, `responses = true`)."""
        return (
            f'[[upstreams]]\nid = "{id}"\nbase_url = "http://{self.api}/v1"\n'
            f'api_key_env = "SDK_PROVIDER_KEY"\n{extra}\n'
        )


@dataclass
class Stack:
    """A Meridian node in front of its mocks."""

    api: str
    mocks: dict[str, Mock]
    log: Path


def route(model: str, *targets: tuple[str, str]) -> str:
    """A route with one tier per `(upstream, provider model)`, in order."""
    tiers = ", ".join(f'[{{ upstream = "{u}", model = "{m}" }}]' for u, m in targets)
    return f'[[routes]]\nmodel = "{model}"\ntiers = [{tiers}]\n\n'


@contextlib.contextmanager
def running(
    tmp_path_factory: pytest.TempPathFactory,
    mocks: dict[str, tuple[dict | None, str]],
    routes: str,
    keys: str = "",
    key_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A node whose upstreams are `mocks` (name: (behaviour, extra upstream
    lines)) and whose routes are `routes`, stopped with its mocks at exit.
    `keys` adds `[[keys]]` entries, their variables set from `key_env`."""
    # Loopback must never go through a proxy the environment names.
    with pytest.MonkeyPatch.context() as env:
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        env.setenv("NO_PROXY", no_proxy)
        env.setenv("no_proxy", no_proxy)
        started: dict[str, Mock] = {}
        node = None
        try:
            for name, (behavior, _) in mocks.items():
                started[name] = Mock.start(behavior)
            dir = tmp_path_factory.mktemp("meridian")
            config = (
                f'[node]\nid = 1\nregion = "{REGION}"\ndata_dir = "{dir / "data"}"\n\n'
                '[listen]\napi = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\nraft = "127.0.0.1:0"\n\n'
                '[[keys]]\nname = "sdk"\nkey_env = "SDK_CLIENT_KEY"\n\n'
                + keys
                + "".join(started[name].upstream(name, extra) for name, (_, extra) in mocks.items())
                + routes
            )
            (dir / "meridian.toml").write_text(config)
            log = dir / "meridian.log"
            node = subprocess.Popen(
                [binary("MERIDIAN_BIN", "meridian"), "serve", "--config", str(dir / "meridian.toml")],
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
                env={
                    **os.environ,
                    "SDK_CLIENT_KEY": CLIENT_KEY,
                    "SDK_PROVIDER_KEY": PROVIDER_KEY,
                    **(key_env or {}),
                },
            )
            line = first_line(node, "meridian")
            fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
            assert line.startswith("meridian ready:") and fields["region"] == REGION, line
            yield Stack(fields["api"].removeprefix("http://"), started, log)
        finally:
            for proc in [node, *(m.proc for m in started.values())]:
                if proc is not None:
                    stop(proc)
