"""`llama-agent batch`: summary, --json, exit codes, one-line errors, the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from agent.batch import BatchSummary, RunRecord
from agent.cli import ExitCode, app
from agent.cli._batch import _Bar
from agent.cli._output import Printer
from agent.testing import ServerError, echo

from .conftest import StartEmulator, WriteTasks

runner = CliRunner()


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_batch_prints_a_summary_and_writes_every_record(
    config: Path, write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo())
    tasks = write_tasks(12, expected="number")
    output = tmp_path / "runs.jsonl"
    args = ["batch", str(config), str(tasks), "-o", str(output), "--host", emu.url]
    result = runner.invoke(app, [*args, "-c", "4"])
    assert result.exit_code == ExitCode.OK, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("12 runs in ")
    assert lines[1:] == ["status: answered 12", "checks: 12 passed, 0 failed, 0 not checked",
                         lines[3]]  # fmt: skip
    assert lines[3].startswith("tokens: ")
    assert result.stderr == ""  # not a terminal: no progress bar
    assert sorted(r["id"] for r in _lines(output)) == list(range(12))
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == ExitCode.OK, again.output
    summary = json.loads(again.stdout)
    assert summary["skipped"] == 12
    assert summary["done"] == 0
    assert summary["output"] == str(output)
    assert summary["failed"] is False


def test_json_summary_and_exit_code_1_when_runs_end_in_error(
    config: Path, write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo(), faults=[ServerError(status=400, message="invalid option", times=3)])
    output = tmp_path / "runs.jsonl"
    args = ["batch", str(config), str(write_tasks(5)), "-o", str(output), "--host", emu.url]
    result = runner.invoke(app, [*args, "--json", "--concurrency", "1"])
    assert result.exit_code == ExitCode.ERROR, result.output
    summary = json.loads(result.stdout)  # one JSON object, nothing else
    assert summary["statuses"] == {"answered": 2, "error": 3}
    assert summary["errors"] == 3
    assert summary["failed"] is True
    assert summary["total"] == 5
    assert summary["remaining"] == 0
    assert summary["tokens"] > 0
    kept = runner.invoke(app, [*args, "--keep-errors", "--json"])
    assert kept.exit_code == ExitCode.OK, kept.output
    assert json.loads(kept.stdout)["skipped"] == 5  # errors count as done: nothing to run
    text = runner.invoke(app, [*args, "-c", "1"])  # the errors run again, and now succeed
    assert text.exit_code == ExitCode.OK, text.output
    assert "3 runs in" in text.stdout
    assert ", 2 already done, 3 that had ended in error run again" in text.stdout
    assert {r["status"] for r in _lines(output)} == {"answered"}


def test_a_run_error_summary_says_to_rerun(
    config: Path, write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo(), faults=[ServerError(status=400, message="invalid option", times=1)])
    output = tmp_path / "runs.jsonl"
    result = runner.invoke(
        app, ["batch", str(config), str(write_tasks(2)), "-o", str(output), "--host", emu.url]
    )
    assert result.exit_code == ExitCode.ERROR
    assert "1 runs ended in error: their records say why; run the same command again" in (
        result.stdout
    )
    assert "judge" not in result.stdout


def test_shard_runs_only_its_part(
    config: Path, write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo())
    tasks = write_tasks(30)
    ids: list[int] = []
    for index in range(3):
        output = tmp_path / f"runs-{index}.jsonl"
        result = runner.invoke(
            app,
            ["batch", str(config), str(tasks), "-o", str(output), "--host", emu.url,
             "--shard", f"{index}/3", "--json"],
        )  # fmt: skip
        assert result.exit_code == ExitCode.OK, result.output
        part = [int(r["id"]) for r in _lines(output)]  # type: ignore[call-overload]
        assert json.loads(result.stdout)["total"] == len(part)
        ids += part
    assert sorted(ids) == list(range(30))


def test_the_unreachable_server_is_one_message_before_any_run(
    config: Path, write_tasks: WriteTasks, tmp_path: Path, dead_host: str
) -> None:
    output = tmp_path / "runs.jsonl"
    result = runner.invoke(
        app,
        ["batch", str(config), str(write_tasks(3)), "-o", str(output),
         "--host", dead_host],
    )  # fmt: skip
    assert result.exit_code == ExitCode.OLLAMA_UNREACHABLE
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not output.exists() or output.read_bytes() == b""


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("missing config", ExitCode.CONFIG, "no such file"),
        ("missing tasks", ExitCode.CONFIG, "no such tasks file"),
        ("bad tasks", ExitCode.CONFIG, "line 2: task must be a non-empty string"),
        ("bad shard", ExitCode.USAGE, "--shard '3/3' is not I/N"),
        ("bad judge", ExitCode.CONFIG, "--judge 'nope' is not module:function"),
        ("not a record", ExitCode.CONFIG, "line 1 is not a run record"),
    ],
)
def test_mistakes_are_one_clear_message(
    case: str,
    code: int,
    says: str,
    config: Path,
    tmp_path: Path,
    write_tasks: WriteTasks,
    dead_host: str,
) -> None:
    tasks = write_tasks(2)
    output = tmp_path / "runs.jsonl"
    args = [str(config), str(tasks), "-o", str(output)]
    if case == "missing config":
        args[0] = str(tmp_path / "nope.yaml")
    elif case == "missing tasks":
        args[1] = str(tmp_path / "nope.jsonl")
    elif case == "bad tasks":
        tasks.write_text('{"id": 1, "task": "ok"}\n{"id": 2, "task": ""}\n')
    elif case == "bad shard":
        args += ["--shard", "3/3"]
    elif case == "bad judge":
        args += ["--judge", "nope"]
    else:
        output.write_text("this is my thesis\n")
    # A host where nothing listens: every case must stop before asking it anything.
    result = runner.invoke(app, ["batch", *args, "--host", dead_host])
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert "Traceback" not in result.output
    json_result = runner.invoke(app, ["batch", *args, "--host", dead_host, "--json"])
    assert json.loads(json_result.stdout)["exit_code"] == code


def test_the_progress_bar_shows_done_failed_rate_and_eta() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120, color_system=None)
    bar = _Bar(Printer(err=console))
    summary = BatchSummary(total=10, skipped=2)
    bar.started(summary)
    record = RunRecord.from_json(
        orjson.dumps({"id": 1, "task": "t", "status": "error", "ok": False, "record_version": 1})
    )
    for _ in range(3):
        summary.add(record)
        bar.finished_one(record, summary)
    bar._progress.refresh()
    shown = stream.getvalue()
    bar.stop()
    assert "3/8" in shown
    assert "3 failed" in shown
    assert "runs/s" in shown
    assert "ETA" in shown
