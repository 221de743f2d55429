"""`--ray`: shards as Ray tasks on a local Ray instance, gathered into the one output file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from agent.batch import BatchSummary, Shard, ray_available, read_tasks, run_batch_on_ray
from agent.config import load_config
from agent.errors import ConfigError, DeveloperError
from agent.testing import echo

from .conftest import StartEmulator, WriteTasks

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ray_available(), reason="needs the ray extra: pip install 'llama-agent[ray]'"
    ),
]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_shards_run_as_ray_tasks_and_a_rerun_skips_them(
    local_ray: Any,
    config: Path,
    write_tasks: WriteTasks,
    emulator: StartEmulator,
    tmp_path: Path,
) -> None:
    emu = emulator(echo(), latency=0.02)
    tasks = read_tasks(write_tasks(60, expected="number"))
    output = tmp_path / "runs.jsonl"
    spec = load_config(config)
    # Ten done before (by hand, as a crashed local batch would have left them): not run again.
    first = [t for t in tasks if t.id in range(10)]
    summary = BatchSummary()

    async def go(todo: Any, into: BatchSummary) -> None:
        await run_batch_on_ray(spec, todo, output, concurrency=8, host=emu.url, summary=into)

    anyio.run(go, first, summary)
    assert summary.done == 10
    assert len(emu.completions) == 10
    summary = BatchSummary()
    anyio.run(go, tasks, summary)
    assert summary.skipped == 10
    assert summary.done == 50
    assert summary.statuses == {"answered": 50}
    assert summary.passed == 50
    assert len(emu.completions) == 60  # the first ten were not run again
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(60))
    assert all(r["answer"] == f"task number {r['id']}" for r in records)


def test_the_command_runs_on_ray_with_the_same_output_and_a_judge_from_a_local_file(
    local_ray: Any,
    config: Path,
    write_tasks: WriteTasks,
    emulator: StartEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    # A judge in a file beside the tasks: the Ray workers (whose folder is not this one) get the
    # function by value.
    (tmp_path / "ray_judge_mod.py").write_text(
        "def odd(line, result):\n"
        "    return line['id'] % 2 == 1, f'id {line[\"id\"]} of {result.answer!r}'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "ray_judge_mod", raising=False)
    emu = emulator(echo())
    output = tmp_path / "runs.jsonl"
    args = ["batch", str(config), str(write_tasks(20)), "-o", str(output), "--host", emu.url]
    args += ["--ray", "--json", "--shard", "1/2", "--judge", "ray_judge_mod:odd"]
    result = CliRunner().invoke(app, args)
    sys.modules.pop("ray_judge_mod", None)
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    part = sorted(r["id"] for r in records)
    assert summary["done"] == summary["total"] == len(part) > 0
    assert part == sorted(t.id for t in Shard(1, 2).select(read_tasks(tmp_path / "tasks.jsonl")))
    odd = [i for i in part if i % 2]
    assert summary["checks"]["passed"] == len(odd)
    assert summary["checks"]["failed"] == len(part) - len(odd)
    for record in records:
        assert record["check"]["reason"] == f"id {record['id']} of 'task number {record['id']}'"


def test_a_bad_judge_fails_before_any_shard_starts(
    local_ray: Any, config: Path, write_tasks: WriteTasks, tmp_path: Path
) -> None:
    tasks = read_tasks(write_tasks(3))

    async def go() -> None:
        await run_batch_on_ray(load_config(config), tasks, tmp_path / "o.jsonl", judge="nope")

    with pytest.raises(DeveloperError, match="is not module:function"):
        anyio.run(go)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_shard_that_fails_on_its_worker_is_the_workers_error(
    local_ray: Any, write_tasks: WriteTasks, tmp_path: Path
) -> None:
    # A custom tool the driver never imports (it only reads the config) and the workers cannot:
    # its file is gone by the time they build the agent.
    (tmp_path / "gone_tools.py").write_text("def ping() -> str:\n    return 'pong'\n")
    path = tmp_path / "agent.yaml"
    path.write_text("model: llama3.1\ntools:\n  - gone_tools:ping\n")
    spec = load_config(path)
    (tmp_path / "gone_tools.py").unlink()

    async def go() -> None:
        tasks = read_tasks(write_tasks(4))
        await run_batch_on_ray(spec, tasks, tmp_path / "o.jsonl", host="127.0.0.1:1")

    with pytest.raises(ConfigError, match="gone_tools"):
        anyio.run(go)
    assert (tmp_path / "o.jsonl").read_bytes() == b""
