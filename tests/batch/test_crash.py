"""A `kill -9` of a real `llama-agent batch` mid-batch loses only the runs in flight: the rerun
reads every line that was written, redoes the rest, and ends with one record per id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from agent.testing import echo

from .conftest import StartEmulator, WriteTasks

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("llama-agent")
TASKS = 200


def _batch(config: Path, tasks: Path, output: Path, host: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    return subprocess.Popen(
        [str(SCRIPT), "batch", str(config), str(tasks), "-o", str(output), "--host", host,
         "--concurrency", "16", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip


def _wait_for_lines(output: Path, process: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if output.exists() and output.read_bytes().count(b"\n") >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"the batch ended early: {process.communicate()}")
        time.sleep(0.02)
    pytest.fail("the batch wrote too little in 60 s")


@pytest.mark.parametrize("torn", [False, True])
def test_a_kill_9_mid_batch_loses_only_the_runs_in_flight(
    config: Path,
    write_tasks: WriteTasks,
    emulator: StartEmulator,
    tmp_path: Path,
    torn: bool,
) -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")
    emu = emulator(echo(), latency=0.1)
    tasks = write_tasks(TASKS)
    output = tmp_path / "runs.jsonl"
    process = _batch(config, tasks, output, emu.url)
    try:
        _wait_for_lines(output, process, 40)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    written = output.read_bytes()
    whole = written[: written.rfind(b"\n") + 1]
    done_before = {orjson.loads(line)["id"] for line in whole.splitlines()}
    assert 40 <= len(done_before) < TASKS
    if torn:
        # The worst a kill can do: the last write cut short. (One write() per line makes it
        # rare; it is made here so the rerun is shown to cope.)
        with output.open("ab") as handle:
            handle.write(b'{"id": 99999, "task": "task number 99999", "sta')
    requests_before = len(emu.completions)
    process = _batch(config, tasks, output, emu.url)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    summary = orjson.loads(stdout)
    assert summary["skipped"] == len(done_before)
    assert summary["done"] == TASKS - len(done_before)
    assert summary["torn_line_dropped"] is (torn or not written.endswith(b"\n"))
    # Only what was not written ran again: one request per run of this config.
    assert len(emu.completions) - requests_before == TASKS - len(done_before)
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(TASKS))  # every id once, none torn
    assert all(r["answer"] == f"task number {r['id']}" for r in records)


def test_ctrl_c_stops_cleanly_keeps_what_was_written_and_says_so(
    config: Path, write_tasks: WriteTasks, emulator: StartEmulator, tmp_path: Path
) -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")
    emu = emulator(echo(), latency=0.1)
    output = tmp_path / "runs.jsonl"
    process = _batch(config, write_tasks(TASKS), output, emu.url)
    try:
        _wait_for_lines(output, process, 20)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr
    summary = orjson.loads(stdout)
    assert summary["interrupted"] is True
    written = output.read_bytes()
    assert written.endswith(b"\n")  # the runs in flight were cancelled, not half written
    records = [orjson.loads(line) for line in written.splitlines()]
    assert len(records) == summary["done"] >= 20
    assert summary["done"] < TASKS
