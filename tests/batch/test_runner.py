"""`run_batch` against the emulated Ollama: one agent, many concurrent runs, one line each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from agent import Agent
from agent.batch import (
    BatchSummary,
    RunRecord,
    Task,
    load_judge,
    parse_tasks,
    resume,
    run_batch,
)
from agent.testing import OllamaEmulator, ServerError, echo

pytestmark = pytest.mark.anyio


def _tasks(count: int, **extra: Any) -> list[Task]:
    return parse_tasks(
        [orjson.dumps({"id": i, "task": f"task number {i}", **extra}) for i in range(count)],
        source="tasks",
    )


def _records(path: Path) -> list[RunRecord]:
    return [RunRecord.from_json(line) for line in path.read_bytes().splitlines()]


class Recorder:
    def __init__(self) -> None:
        self.started_with: tuple[int, int] | None = None
        self.seen: list[Any] = []

    def started(self, summary: BatchSummary) -> None:
        self.started_with = (summary.total, summary.skipped)

    def finished_one(self, record: RunRecord, summary: BatchSummary) -> None:
        self.seen.append((record.id, summary.done))


async def test_every_task_gets_its_own_record_from_one_shared_agent(tmp_path: Path) -> None:
    output = tmp_path / "runs.jsonl"
    progress = Recorder()
    # The echo model answers each run with its own task: a run that got another run's messages
    # (state shared between concurrent runs) would show up as a wrong answer.
    async with OllamaEmulator(echo(), latency=0.02) as emu, Agent(host=emu.url) as agent:
        summary = await run_batch(
            agent, _tasks(120, expected="number"), output, concurrency=32, progress=progress
        )
    records = _records(output)
    assert sorted(int(r.id) for r in records) == list(range(120))
    for record in records:
        assert record.answer == f"task number {record.id}"
        assert record.messages[-2]["content"] == f"task number {record.id}"
        assert record.check is not None
        assert record.check.passed is True
    assert summary.done == 120
    assert summary.statuses == {"answered": 120}
    assert summary.passed == 120
    assert summary.tokens == sum(r.tokens for r in records) > 0
    assert not summary.failed
    assert progress.started_with == (120, 0)
    assert [done for _, done in progress.seen] == list(range(1, 121))


async def test_the_runs_really_overlap_up_to_the_concurrency(tmp_path: Path) -> None:
    active = 0
    peak = 0

    class Counting(Agent):
        async def run(self, task: Any, **kwargs: Any) -> Any:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                return await super().run(task, **kwargs)
            finally:
                active -= 1

    async with OllamaEmulator(echo(), latency=0.05) as emu, Counting(host=emu.url) as agent:
        await run_batch(agent, _tasks(40), tmp_path / "runs.jsonl", concurrency=8)
    assert peak == 8


async def test_a_rerun_skips_what_is_done_and_retries_errors(tmp_path: Path) -> None:
    output = tmp_path / "runs.jsonl"
    tasks = _tasks(10)
    # The server refuses the first two requests (400, not retried): those runs end in error.
    failing = [ServerError(status=400, message="invalid option", times=2)]
    async with OllamaEmulator(echo(), faults=failing) as emu, Agent(host=emu.url) as agent:
        first = await run_batch(agent, tasks, output, concurrency=1)
    assert first.statuses == {"answered": 8, "error": 2}
    assert first.failed
    errors = [r for r in _records(output) if r.status == "error"]
    assert len(errors) == 2
    assert all(r.error for r in errors)
    async with OllamaEmulator(echo()) as emu:
        async with Agent(host=emu.url) as agent:
            second = await run_batch(agent, tasks, output, concurrency=4)
        requests = len(emu.completions)
    assert second.skipped == 8
    assert second.statuses == {"answered": 2}
    assert requests == 2  # only the two failed runs ran again
    records = _records(output)
    assert sorted(int(r.id) for r in records) == list(range(10))  # one line per id
    assert {r.status for r in records} == {"answered"}
    async with OllamaEmulator(echo()) as emu:
        async with Agent(host=emu.url) as agent:
            third = await run_batch(agent, tasks, output)
        assert emu.completions == []
    assert third.skipped == 10
    assert third.done == 0


async def test_a_cancelled_batch_keeps_whole_lines_and_resumes(tmp_path: Path) -> None:
    output = tmp_path / "runs.jsonl"
    tasks = _tasks(60)
    summary = BatchSummary()
    async with OllamaEmulator(echo(), latency=0.05) as emu, Agent(host=emu.url) as agent:
        with anyio.move_on_after(0.4):
            await run_batch(agent, tasks, output, concurrency=4, summary=summary)
    assert summary.interrupted
    written = output.read_bytes()
    assert written.endswith(b"\n")
    assert 0 < summary.done < 60
    assert len(written.splitlines()) == summary.done
    assert len(resume(output).done) == summary.done
    async with OllamaEmulator(echo()) as emu:
        async with Agent(host=emu.url) as agent:
            rest = await run_batch(agent, tasks, output, concurrency=8)
        assert len(emu.completions) == 60 - summary.done
    assert rest.skipped == summary.done
    assert sorted(int(r.id) for r in _records(output)) == list(range(60))


async def test_a_judge_sees_the_line_and_the_result(tmp_path: Path, monkeypatch: Any) -> None:
    module = tmp_path / "batch_judge_mod.py"
    module.write_text(
        "async def judge(line, result):\n"
        "    if line['id'] == 2:\n"
        "        raise RuntimeError('broken on 2')\n"
        "    return result.answer.endswith(str(line['metadata']['n'])), 'ends with n'\n"
    )
    monkeypatch.chdir(tmp_path)
    tasks = parse_tasks(
        [
            orjson.dumps({"id": i, "task": f"n is {i}", "metadata": {"n": i if i < 3 else 9}})
            for i in range(4)
        ],
        source="tasks",
    )
    try:
        judge = load_judge("batch_judge_mod:judge")
    finally:
        sys.modules.pop("batch_judge_mod", None)
    async with OllamaEmulator(echo()) as emu, Agent(host=emu.url) as agent:
        summary = await run_batch(agent, tasks, tmp_path / "runs.jsonl", judge=judge)
    checks = {r.id: r.check.to_dict() for r in _records(tmp_path / "runs.jsonl") if r.check}
    assert checks == {
        0: {"passed": True, "expected": None, "reason": "ends with n"},  # "n is 0" ends with 0
        1: {"passed": True, "expected": None, "reason": "ends with n"},
        2: {
            "passed": None,
            "expected": None,
            "reason": "the judge raised RuntimeError: broken on 2",
        },
        3: {"passed": False, "expected": None, "reason": "ends with n"},  # not with 9
    }
    assert (summary.passed, summary.check_failed, summary.unchecked) == (2, 1, 1)
    assert summary.judge_errors == 1
    assert summary.failed  # a broken judge fails the batch's exit code


async def test_a_record_replays_exactly_when_runs_are_concurrent(tmp_path: Path) -> None:
    from agent.llama3 import BEGIN_OF_TEXT, render_prompt

    async with OllamaEmulator(echo()) as emu:
        async with Agent(host=emu.url, system="Be brief.") as agent:
            await run_batch(agent, _tasks(20), tmp_path / "runs.jsonl", concurrency=20)
        sent = {BEGIN_OF_TEXT + (r.prompt or "") for r in emu.completions}
    for record in _records(tmp_path / "runs.jsonl"):
        render = record.render
        prompt = render_prompt(
            record.messages[:-1],
            render["tools"],
            model=render["model"],
            today=__import__("datetime").date.fromisoformat(record.today or ""),
            tool_format=render["tool_format"],
            tool_choice=render["tool_choice"],
        )
        assert prompt in sent
