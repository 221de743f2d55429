"""Batch test helpers: a config and a tasks file on disk, an emulated Ollama in a thread."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.testing import OllamaEmulator, Script

StartEmulator = Callable[..., OllamaEmulator]
WriteTasks = Callable[..., Path]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config without tools: each run is one request (the echo model answers its task)."""
    path = tmp_path / "config.yaml"
    path.write_text("model: llama3.1\nsystem: Answer briefly.\n")
    return path


@pytest.fixture
def write_tasks(tmp_path: Path) -> WriteTasks:
    """`write_tasks(count, **extra)`: ids 0..count-1, task "task number {id}"."""

    def write(count: int, name: str = "tasks.jsonl", **extra: Any) -> Path:
        path = tmp_path / name
        path.write_bytes(
            b"".join(
                orjson.dumps({"id": i, "task": f"task number {i}", **extra}) + b"\n"
                for i in range(count)
            )
        )
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
def dead_host() -> str:
    """A loopback host:port where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
