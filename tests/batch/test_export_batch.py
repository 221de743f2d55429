"""End to end: `llama-agent batch` writes runs.jsonl against the emulator, `llama-agent export`
turns it into training data, and every prompt in the exported texts is one the server received."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import ExitCode, app
from agent.llama3 import BEGIN_OF_TEXT, EOM, EOT
from agent.testing import ScriptRequest, tool_call_text

from .conftest import StartEmulator, WriteTasks

runner = CliRunner()

CONFIG = """\
model: llama3.1
system: Use the tools for arithmetic.
tools:
  - math: {names: both}
"""


def _script(request: ScriptRequest) -> str:
    # "task number N": the built-in (eom) for even N, the custom tool for odd N, then answer.
    number = int(re.findall(r"task number (\d+)", request.prompt)[-1])
    if request.tool_results:
        return f"The result is {request.tool_results[-1]}.<|eot_id|>"
    if number % 2 == 0:
        return f'<|python_tag|>wolfram_alpha.call(query="{number} + 1")<|eom_id|>'
    return tool_call_text("calculate", {"expression": f"{number} + 1"})


def test_batch_then_export_replays_what_the_server_received(
    write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(_script)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    runs, out = tmp_path / "runs.jsonl", tmp_path / "train.jsonl"
    tasks = write_tasks(8)
    batch = ["batch", str(config), str(tasks), "-o", str(runs), "--host", emu.url, "-c", "4"]
    result = runner.invoke(app, batch)
    assert result.exit_code == ExitCode.OK, result.output

    result = runner.invoke(app, ["export", str(runs), "-o", str(out), "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    summary = json.loads(result.stdout)
    assert (summary["input_runs"], summary["exported"], summary["skipped"]) == (8, 8, {})

    received = [BEGIN_OF_TEXT + (r.prompt or "") for r in emu.completions]
    replies = [r.completion for r in emu.completions]
    found = []
    for line in map(json.loads, out.read_text().splitlines()):
        text, spans = line["text"], line["completion_spans"]
        assert len(spans) == 2
        for start, end in spans:
            # What came before each completion is a prompt the server received, exactly; the
            # completion is what the server sent back, plus the end token Ollama strips.
            found.append(received.index(text[:start]))
            assert text[start:end] in {replies[found[-1]] + EOM, replies[found[-1]] + EOT}
    assert sorted(found) == list(range(len(received)))  # every request, each once
