"""`opentelemetry-instrument llama-agent run ...` prints the run's spans: the command needs no
code of its own for it, only `opentelemetry-api` (the SDK and the distro come from the user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.testing import call_tool
from tests.cli.conftest import StartEmulator

pytestmark = pytest.mark.slow

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
SCRIPT = Path(sys.executable).with_name("llama-agent")
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed, among other output."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    at = text.find("{")
    while at >= 0:
        value, end = decoder.raw_decode(text, at)
        found.append(value)
        at = text.find("{", end)
    return found


def test_opentelemetry_instrument_prints_the_spans_of_a_run(
    config: Path, emulator: StartEmulator
) -> None:
    if not INSTRUMENT.exists() or not SCRIPT.exists():
        pytest.skip("opentelemetry-instrument or llama-agent is not installed here")
    emu = emulator(call_tool("calculate", {"expression": "3*7"}, then="21."))
    env = {
        **os.environ,
        "OLLAMA_HOST": emu.url,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "llama-agent-test",
    }
    env.pop(CAPTURE, None)
    done = subprocess.run(
        [str(INSTRUMENT), str(SCRIPT), "run", str(config), "3*7?"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("21.\n")
    printed = _objects(done.stdout)
    assert sorted(span["name"] for span in printed) == [
        "execute_tool calculate",
        "invoke_agent llama-agent",
        "text_completion llama3.1",
        "text_completion llama3.1",
    ]
    spans = {span["name"]: span for span in printed}
    assert set(spans) == {
        "invoke_agent llama-agent",
        "text_completion llama3.1",
        "execute_tool calculate",
    }
    run = spans["invoke_agent llama-agent"]
    for name in ("text_completion llama3.1", "execute_tool calculate"):
        assert spans[name]["parent_id"] == run["context"]["span_id"]
        assert spans[name]["context"]["trace_id"] == run["context"]["trace_id"]
    assert spans["execute_tool calculate"]["attributes"]["gen_ai.tool.name"] == "calculate"
    assert run["resource"]["attributes"]["service.name"] == "llama-agent-test"
    assert "3*7" not in json.dumps(printed)  # no prompt text without the opt-in (CAPTURE)
