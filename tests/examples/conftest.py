"""Helpers for running the files in `examples/` against the emulator.

The examples are scripts, not a package: `load_example` imports one by path, the way
`python examples/x.py` would find its imports.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.tools.conftest import require_sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(relative: str) -> ModuleType:
    """Import `examples/<relative>` under the name `example_<stem>` (once per test session)."""
    path = EXAMPLES / relative
    name = f"example_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look their module up while defining
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bwrap() -> None:
    """The code sandbox must start here (the real startup probe): fail in CI (which installs
    bubblewrap), skip elsewhere."""
    require_sandbox()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
