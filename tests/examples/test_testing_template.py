"""`examples/testing/`: the template users copy runs green, as they would run it (its own pytest,
its own conftest), in a subprocess so its fixtures and imports stay its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import EXAMPLES

TEMPLATE = EXAMPLES / "testing"


def test_the_testing_template_passes_as_a_user_runs_it() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "PYTEST_ADDOPTS")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout + done.stderr
    source = (TEMPLATE / "test_my_agent.py").read_text()
    expected = len(re.findall(r"^async def test_|^def test_", source, flags=re.MULTILINE))
    assert expected >= 8
    assert re.match(rf"{expected} passed in ", summary), summary
