"""Fixtures for the tool tests: the bubblewrap requirement, a fresh sandbox probe."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tools._sandbox._launch import resolve_launch


@pytest.fixture(scope="session")
def bwrap() -> None:
    """The real sandbox is needed: fail in CI (which installs it), skip elsewhere."""
    if shutil.which("bwrap") is None:
        message = "bubblewrap is not installed (apt-get install bubblewrap)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    """Forget which launch worked, for tests that change PATH or the environment."""
    resolve_launch.cache_clear()
    yield
    resolve_launch.cache_clear()
