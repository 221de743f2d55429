"""The tasks of a batch: reading and checking the input file, `--shard I/N`, and resuming.

- `read_tasks(path)`: every line `{"id", "task"}` plus optional `expected` and `metadata`;
  all problems are reported at once, each with its line number, before anything runs.
- `Shard(index, count)`: a deterministic split by a hash of the id (BLAKE2b of the id's JSON, so
  the same on every machine and every Python run, unlike `hash()`): the N shards are disjoint and
  together complete, whatever order the input lines come in.
- `resume(path)`: the ids an output file already holds, so a rerun skips them. A `kill -9` can
  leave at most the last line torn (each record is one `write()` with `O_APPEND`); that line is
  dropped, and cut from the file, so the next append starts on a line of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent.errors import DeveloperError

from ._checks import expected_problem
from ._record import TaskId, is_task_id

_KEYS = frozenset({"id", "task", "expected", "metadata"})
_SHOWN_PROBLEMS = 20  # beyond this a file is clearly not a tasks file; the count says the rest


@dataclass(frozen=True, kw_only=True)
class Task:
    """One input line.

    `expected`: what the answer must match under the normalisation rule (`agent.batch` docs);
    absent (`has_expected=False`) when the line has no `expected` key (`"expected": null` is
    refused: it would compare against nothing). `line`: the 1-based line in the file.
    """

    id: TaskId
    task: str
    expected: Any = None
    has_expected: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def key(self) -> bytes:
        """The id as the JSON it is written as: `1` and `"1"` are different ids."""
        return id_key(self.id)


def id_key(task_id: TaskId) -> bytes:
    """The id's canonical bytes (its JSON), for hashing and for the set of ids done."""
    # Copied to its size: orjson's own bytes object keeps the 4 KiB buffer it wrote into, and
    # a resume keeps one key per task done (a million tasks: 4 GB instead of ~60 MB).
    return bytes(memoryview(orjson.dumps(task_id)))


def _task(data: Any, line: int) -> Task | list[str]:
    if not isinstance(data, dict):
        return [f"line {line}: a task is a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    unknown = sorted(data.keys() - _KEYS)
    if unknown:
        problems.append(
            f"line {line}: unknown key {', '.join(map(repr, unknown))}: a task has id, task, "
            "expected and metadata; put anything else under metadata"
        )
    if "id" not in data or not is_task_id(data["id"]):
        problems.append(
            f"line {line}: id must be a string or an integer, got {data.get('id', 'nothing')!r}"
        )
    if not isinstance(data.get("task"), str) or not data["task"].strip():
        problems.append(f"line {line}: task must be a non-empty string")
    if "expected" in data:
        if data["expected"] is None:
            problems.append(f"line {line}: expected is null: remove it for a task without a check")
        elif (problem := expected_problem(data["expected"])) is not None:
            problems.append(f"line {line}: {problem}")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"line {line}: metadata must be a JSON object")
    if problems:
        return problems
    return Task(
        id=data["id"],
        task=data["task"],
        expected=data.get("expected"),
        has_expected="expected" in data,
        metadata=metadata,
        line=line,
    )


def parse_tasks(lines: Iterable[bytes], *, source: str) -> list[Task]:
    """The tasks of `lines` (blank lines skipped), or a `DeveloperError` listing every problem
    with its line number (`source` names the file in the message)."""
    tasks: list[Task] = []
    problems: list[str] = []
    first_line: dict[bytes, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc})")
            continue
        parsed = _task(data, number)
        if isinstance(parsed, list):
            problems.extend(parsed)
            continue
        earlier = first_line.setdefault(parsed.key, number)
        if earlier != number:
            problems.append(
                f"line {number}: id {parsed.id!r} is already on line {earlier}: ids must be "
                "unique, they are how a rerun knows what is done"
            )
            continue
        tasks.append(parsed)
    if problems:
        shown = problems[:_SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        raise DeveloperError(
            f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)} in the tasks file; "
            "fix them and run again:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    return tasks


def read_tasks(path: str | os.PathLike[str]) -> list[Task]:
    """The tasks of a JSON Lines file (see `parse_tasks`)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DeveloperError(f"{file}: no such tasks file; check the path") from None
    except IsADirectoryError:
        raise DeveloperError(f"{file} is a folder: give the tasks file (JSON Lines)") from None
    except OSError as exc:
        raise DeveloperError(f"{file}: cannot read the tasks file ({exc.strerror})") from None
    return parse_tasks(data.splitlines(), source=str(file))


# --- shards -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` (0-based: `0/4` .. `3/4`, as a Kubernetes indexed Job numbers
    its pods; a 1-based Slurm array passes `$((SLURM_ARRAY_TASK_ID - 1))`)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise DeveloperError(
                f"shard {self.index}/{self.count} does not exist: use I/N with N >= 1 and "
                f"0 <= I < N (0-based)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"2/8"` → `Shard(2, 8)`."""
        index, slash, count = text.partition("/")
        try:
            if not slash:
                raise ValueError(text)
            return cls(int(index), int(count))
        except ValueError:
            raise DeveloperError(
                f"--shard {text!r} is not I/N: give this part's 0-based index and the number of "
                "parts, as in --shard 0/4"
            ) from None

    def holds(self, task_id: TaskId) -> bool:
        return shard_of(task_id, self.count) == self.index

    def select(self, tasks: Iterable[Task]) -> list[Task]:
        return [t for t in tasks if self.holds(t.id)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(task_id: TaskId, count: int) -> int:
    """Which of `count` shards holds `task_id`: stable across machines, runs and input order."""
    digest = hashlib.blake2b(id_key(task_id), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


# --- resuming ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Resumed:
    """What an output file already holds, as `resume` left it."""

    done: frozenset[bytes]
    """`id_key`s of the records kept: these tasks are not run again."""
    lines: int
    """Records kept in the file."""
    torn: bool = False
    """A torn last line (a crash mid-write) was cut off."""
    retried: int = 0
    """Records of runs that ended in `error`, taken out of the file to be run again."""


def _scan(data: bytes, source: str) -> Iterator[tuple[bytes, bool, bytes]]:
    """(id_key, whether the run ended in error, the line) for each record of `data`."""
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
            task_id = record["id"]
            if not is_task_id(task_id):
                raise TypeError(task_id)
        except (orjson.JSONDecodeError, TypeError, KeyError):
            raise DeveloperError(
                f"{source}: line {number} is not a run record: this is not an output of "
                "`llama-agent batch` (or it was edited); give another -o file or fix that line"
            ) from None
        yield id_key(task_id), record.get("status") == "error", raw


def _replace(file: Path, lines: Iterable[bytes]) -> None:
    """Write `lines` to `file` atomically: a crash leaves the old file or the new, never half."""
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, file)
    finally:
        temporary.unlink(missing_ok=True)


def resume(path: str | os.PathLike[str], *, retry_errors: bool = True) -> Resumed:
    """The ids already done in the output file at `path` (nothing if there is no file yet).

    - The last line, if it does not end with a newline, was cut short by a crash: it is dropped
      and truncated away (its run is redone).
    - With `retry_errors`, records of runs that ended in `error` (the server was down, a
      deadline passed: the operator's problem, not the model's answer) are taken out of the
      file, so their tasks run again and each id keeps one line.
    - Any other line that is not a record is an error: the file is not a batch output, and
      appending to it would only make things worse.
    """
    file = Path(path)
    try:
        with file.open("r+b") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            torn = end < len(data)
            if torn:
                handle.truncate(end)
                data = data[:end]
    except FileNotFoundError:
        return Resumed(done=frozenset(), lines=0)
    except IsADirectoryError:
        raise DeveloperError(f"-o {file} is a folder: give a file for the runs") from None
    except OSError as exc:
        raise DeveloperError(f"{file}: cannot open the output file ({exc.strerror})") from None
    records = list(_scan(data, str(file)))
    failed = sum(error for _, error, _ in records) if retry_errors else 0
    if failed:
        records = [r for r in records if not r[1]]
        _replace(file, (line for _, _, line in records))
    return Resumed(
        done=frozenset(key for key, _, _ in records), lines=len(records), torn=torn, retried=failed
    )
