"""Fixtures for the tool tests: the bubblewrap requirement, a fresh sandbox probe."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agent.errors import SandboxUnavailableError
from llama_agent_tools import SandboxLimits
from llama_agent_tools._sandbox._launch import forget_probes, resolve_launch


def require_sandbox() -> None:
    """Skip unless the real sandbox starts here (the startup probe runs `print(6 * 7)` in it);
    in CI, which installs bubblewrap, fail instead."""
    try:
        resolve_launch("bwrap", SandboxLimits(), None, ())
    except SandboxUnavailableError as exc:
        message = f"the code sandbox cannot start here: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def bwrap() -> None:
    """The real sandbox is needed: fail in CI (which installs it), skip elsewhere."""
    require_sandbox()


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    """Forget which launch worked, for tests that change PATH or the environment."""
    forget_probes()
    yield
    forget_probes()
