"""The tasks file: validation with line numbers, `--shard I/N`, and the resume rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agent.batch import Shard, id_key, parse_tasks, read_tasks, resume, shard_of
from agent.errors import DeveloperError


def _lines(*items: object) -> list[bytes]:
    return [item if isinstance(item, bytes) else orjson.dumps(item) for item in items]


def test_a_valid_file_gives_its_tasks_in_order_skipping_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(
        b'{"id": 1, "task": "one"}\n\n'
        b'{"id": "b", "task": "two", "expected": 4, "metadata": {"k": [1]}}\n'
        b'{"id": 3, "task": "three", "expected": ["x", 1.5]}'  # no final newline: still a line
    )
    tasks = read_tasks(path)
    assert [(t.id, t.task, t.line) for t in tasks] == [
        (1, "one", 1),
        ("b", "two", 3),
        (3, "three", 4),
    ]
    assert not tasks[0].has_expected
    assert tasks[1].has_expected
    assert tasks[1].expected == 4
    assert tasks[1].metadata == {"k": [1]}
    assert tasks[2].expected == ["x", 1.5]


def test_every_problem_is_reported_at_once_with_its_line_number() -> None:
    lines = _lines(
        {"id": 1, "task": "fine"},
        b"{not json",
        {"id": 1.5, "task": "t"},
        {"id": True, "task": "t"},
        {"id": 2, "task": ""},
        {"id": 3, "task": "t", "answer": "x"},
        {"id": 4, "task": "t", "expected": None},
        {"id": 5, "task": "t", "expected": {"a": 1}},
        {"id": 6, "task": "t", "metadata": [1]},
        {"id": 1, "task": "again"},
        [1, 2],
    )
    with pytest.raises(DeveloperError) as caught:
        parse_tasks(lines, source="tasks.jsonl")
    message = str(caught.value)
    assert message.startswith("tasks.jsonl: 10 problems in the tasks file; fix them")
    for expected in [
        "line 2: not JSON",
        "line 3: id must be a string or an integer, got 1.5",
        "line 4: id must be a string or an integer, got True",
        "line 5: task must be a non-empty string",
        "line 6: unknown key 'answer'",
        "line 7: expected is null",
        "line 8: expected must be a string, a number or a list of them",
        "line 9: metadata must be a JSON object",
        "line 10: id 1 is already on line 1",
        "line 11: a task is a JSON object, got list",
    ]:
        assert expected in message


def test_a_long_list_of_problems_is_cut_with_a_count() -> None:
    with pytest.raises(DeveloperError, match=r"\.\.\. and 30 more"):
        parse_tasks([b"nope"] * 50, source="t")


@pytest.mark.parametrize(
    ("path", "says"), [("missing.jsonl", "no such tasks file"), (".", "is a folder")]
)
def test_a_missing_file_is_one_clear_message(tmp_path: Path, path: str, says: str) -> None:
    with pytest.raises(DeveloperError, match=says):
        read_tasks(tmp_path / path)


def test_an_integer_id_and_the_same_digits_as_a_string_are_different_ids() -> None:
    tasks = parse_tasks(_lines({"id": 1, "task": "a"}, {"id": "1", "task": "b"}), source="t")
    assert len({t.key for t in tasks}) == 2


# --- shards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_the_shards_are_disjoint_and_together_complete(count: int) -> None:
    ids: list[str | int] = [*range(500), *(f"task-{i}" for i in range(500))]
    tasks = parse_tasks([orjson.dumps({"id": i, "task": "t"}) for i in ids], source="t")
    parts = [Shard(index, count).select(tasks) for index in range(count)]
    keys = [t.key for part in parts for t in part]
    assert sorted(keys) == sorted(t.key for t in tasks)  # complete, each id once
    assert len(set(keys)) == len(keys)
    if count > 1:  # and not lopsided: every part gets a fair share of 1,000 ids
        assert min(len(p) for p in parts) > 1000 / count / 2


def test_the_split_does_not_depend_on_the_input_order() -> None:
    ids = [f"q{i}" for i in range(200)]
    lines = [orjson.dumps({"id": i, "task": "t"}) for i in ids]
    shard = Shard(1, 3)
    forward = {t.id for t in shard.select(parse_tasks(lines, source="t"))}
    backward = {t.id for t in shard.select(parse_tasks(lines[::-1], source="t"))}
    assert forward == backward


def test_the_split_is_the_same_in_another_python_process_with_another_hash_seed() -> None:
    ids = ["alpha", "beta", 7, "γ", 123456789012]
    here = [shard_of(i, 5) for i in ids]
    code = (
        "import json, sys; from agent.batch import shard_of; "
        f"print(json.dumps([shard_of(i, 5) for i in {ids!r}]))"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        assert orjson.loads(done.stdout) == here
    # Pinned: a change of the hash would move ids between the shards of jobs already running.
    assert here == [1, 3, 0, 2, 1]
    assert [shard_of(i, 1000) for i in ["alpha", "beta", 7]] == [751, 978, 890]
    assert shard_of("alpha", 1) == 0


@pytest.mark.parametrize("text", ["3", "a/b", "2/2", "-1/2", "0/0", "1/"])
def test_a_bad_shard_says_how_to_write_one(text: str) -> None:
    with pytest.raises(DeveloperError, match="0-based"):
        Shard.parse(text)


def test_a_shard_reads_as_written() -> None:
    assert Shard.parse("2/8") == Shard(2, 8)
    assert str(Shard(2, 8)) == "2/8"


# --- resume -----------------------------------------------------------------------------------


def _record(task_id: object, status: str = "answered") -> bytes:
    return orjson.dumps({"id": task_id, "task": "t", "status": status, "ok": True}) + b"\n"


def test_no_output_file_means_nothing_is_done(tmp_path: Path) -> None:
    resumed = resume(tmp_path / "runs.jsonl")
    assert resumed.done == frozenset()
    assert not (tmp_path / "runs.jsonl").exists()


def test_a_torn_last_line_is_dropped_and_cut_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    whole = _record(1) + _record("two")
    path.write_bytes(whole + _record(3)[:17])  # a crash in the middle of the third write
    resumed = resume(path)
    assert resumed.done == {id_key(1), id_key("two")}
    assert resumed.torn
    assert path.read_bytes() == whole  # the next append starts on a line of its own
    again = resume(path)
    assert not again.torn
    assert again.done == resumed.done


def test_a_broken_line_before_the_last_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    original = _record(1) + b"garbage\n" + _record(2)
    path.write_bytes(original)
    with pytest.raises(DeveloperError, match="line 2 is not a run record"):
        resume(path)
    assert path.read_bytes() == original  # nothing changed


def test_runs_that_ended_in_error_are_taken_out_to_run_again(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(_record(1) + _record(2, "error") + _record(3, "step_limit"))
    kept = resume(path, retry_errors=False)
    assert kept.done == {id_key(1), id_key(2), id_key(3)}
    assert kept.retried == 0
    resumed = resume(path)
    assert resumed.done == {id_key(1), id_key(3)}  # a limit is an outcome; an error is not
    assert resumed.retried == 1
    assert path.read_bytes() == _record(1) + _record(3, "step_limit")
    assert [p.name for p in tmp_path.iterdir()] == ["runs.jsonl"]  # no temporary left


def test_an_id_key_holds_no_more_memory_than_its_json() -> None:
    """A resume keeps one key per task done: orjson's bytes kept its 4 KiB buffer (a million
    tasks would have held 4 GB)."""
    import tracemalloc

    tracemalloc.start()
    try:
        keys = [id_key(f"task-{i}") for i in range(2000)]
        held = tracemalloc.get_traced_memory()[0] / len(keys)
    finally:
        tracemalloc.stop()
    assert held < 200, f"{held:.0f} bytes per key"
