"""CLI test helpers: configs on disk, an emulated Ollama in a thread, a dead port."""

from __future__ import annotations

import contextlib
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.testing import OllamaEmulator, Script
from llama_agent_tools._sandbox import _launch

CONFIG = """\
model: llama3.1
system: You are terse.
tools:
  - math: {names: both}   # wolfram_alpha and calculate
limits:
  max_steps: 4
"""

StartEmulator = Callable[..., OllamaEmulator]
NAMESPACES_BLOCKED = "bwrap: No permissions to creating new namespace"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A small valid config (math tools only, so no sandbox and no network)."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text (dedented) to `config.yaml` in a temporary folder."""

    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    """Start `OllamaEmulator(script, **knobs)` on a background thread; stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(script: Script | None = None, **knobs: Any) -> OllamaEmulator:
            return stack.enter_context(OllamaEmulator(script, **knobs).start_in_thread())

        yield start


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def probe_fails(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sandbox's startup probe fails, as where namespaces are blocked (bwrap stays put)."""
    _launch.forget_probes()
    monkeypatch.setattr(_launch, "_probe", lambda launch: NAMESPACES_BLOCKED)
    yield
    _launch.forget_probes()
