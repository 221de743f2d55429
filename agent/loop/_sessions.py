"""Sessions: conversations kept between runs, and across restarts, under a name.

`agent.run(task, session="support-42")` loads the conversation, runs the task on it, and commits
each step as it finishes: a crash loses at most the step in flight. The messages are kept
exactly (raw completions, trusted flags, call ids), with the date the conversation's system
prompt was rendered with and the prompt family, so a reloaded session renders the same prefix
and the server's prompt cache still applies.

`Store` is the seam (an ABC: load, write, list, delete); `SQLiteStore` keeps sessions in one
SQLite file, by default in the user data folder (`platformdirs`), or under `LLAMA_AGENT_HOME`.
Runs of one session are serialized by the store (per process); runs of different sessions
share nothing and run in parallel.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from agent.backends import Usage
from agent.errors import DeveloperError
from agent.llama3 import Family, Message, ToolCall

from ._events import Event, StepFinished
from ._result import RunResult, RunUsage
from ._run import RunState, opening_messages

T = TypeVar("T")

HOME_VARIABLE = "LLAMA_AGENT_HOME"
"""A folder for the runtime's own files (`sessions.db`), instead of the user data folder."""


def default_store_path() -> Path:
    """`$LLAMA_AGENT_HOME/sessions.db`, else `sessions.db` in the user data folder."""
    home = os.environ.get(HOME_VARIABLE)
    if home:
        return Path(home).expanduser() / "sessions.db"
    import platformdirs  # here: only a run with a session needs it

    return platformdirs.user_data_path("llama-agent", appauthor=False) / "sessions.db"


# --- what a store holds ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SessionInfo:
    """One stored conversation, without its messages (what `llama-agent sessions` lists)."""

    name: str
    created: datetime.datetime
    updated: datetime.datetime
    messages: int
    steps: int
    tokens: int  # prompt and generated tokens the server evaluated, all steps summed
    today: datetime.date | None  # the date its system prompt was rendered with
    family: Family | None


@dataclass(frozen=True, kw_only=True)
class Session:
    """A stored conversation: its messages exactly as the runs left them, when each was
    committed (`times[i]` for `messages[i]`, seconds since the epoch), and each step's usage."""

    info: SessionInfo
    messages: tuple[Message, ...]
    times: tuple[float, ...]
    usage: RunUsage

    def as_history(self) -> RunResult:
        """The conversation as a `RunResult`, as `history=` takes it (date and family kept)."""
        return RunResult(
            answer="",
            messages=self.messages,
            status="answered",
            usage=self.usage,
            today=self.info.today,
            family=self.info.family,
            new_from=len(self.messages),
        )


class Store(ABC):
    """Where sessions live. Subclass it to keep them elsewhere (a service's database).

    `write` must be atomic: either all of a step is stored or none of it. `lock(name)`
    serializes the runs of one session within this process; a store shared by several
    processes should also serialize writes itself (SQLite does).
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Semaphore, int]] = {}

    @abstractmethod
    async def load(self, name: str) -> Session | None:
        """The session, or `None` when there is none of that name."""

    @abstractmethod
    async def write(
        self,
        name: str,
        messages: Sequence[Message],
        *,
        keep: int,
        usage: Usage | None,
        run_id: str,
        today: datetime.date,
        family: Family | None,
    ) -> None:
        """Atomically: keep the session's first `keep` messages, store `messages` after them,
        and record one step's `usage`. Creates the session when it does not exist."""

    @abstractmethod
    async def sessions(self) -> list[SessionInfo]:
        """Every session, the most recently updated first."""

    @abstractmethod
    async def delete(self, name: str) -> bool:
        """Delete the session; `False` when there was none of that name."""

    async def aclose(self) -> None:  # noqa: B027 - a store may hold nothing to close
        """Release what the store holds (a connection)."""

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """Hold session `name` for one run; other runs of it wait their turn.

        A semaphore, not a lock: a run's stream may be closed from another task than the one
        that started it, and an anyio lock must be released by its owner.
        """
        semaphore, users = self._locks.get(name) or (anyio.Semaphore(1), 0)
        self._locks[name] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (semaphore, users - 1)


# --- running in a session -------------------------------------------------------------------------


def check_session_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise DeveloperError(
            f"a session name is a non-empty string of at most 200 characters, got {name!r}"
        )
    return name


async def session_events(
    store: Store,
    name: str,
    state: RunState,
    *,
    task: str | Message,
    system: str | None,
    today: datetime.date | None,
    events: Callable[[], AsyncGenerator[Event, None]],
) -> AsyncGenerator[Event, None]:
    """The run's events, with session `name` loaded into `state` first and each finished step
    committed to `store` before its `StepFinished` is yielded.

    A step cut short (cancelled, timed out mid-generation, a server error) is not committed: a
    later run continues from the last complete step. A run that fails before any step stores
    nothing, not even its task, so the conversation never holds two user turns in a row.
    """
    async with store.lock(name):
        session = await store.load(name)
        history = session.as_history() if session is not None else None
        messages, new_from = opening_messages(task, system=system, history=history)
        state.messages[:] = messages
        state.new_from = new_from
        state.history = len(history.messages) if history is not None else 0
        if today is None:
            today = history.today if history is not None and history.today else state.today
        state.today = today
        # The stored messages that stay as they are (the agent's system prompt may replace the
        # stored one); the first write replaces the rest.
        keep = _common_prefix(history.messages if history is not None else (), messages)
        async with aclosing(events()) as inner:
            async for event in inner:
                if isinstance(event, StepFinished):
                    await store.write(
                        name,
                        state.messages[keep:],
                        keep=keep,
                        usage=event.usage,
                        run_id=state.run_id,
                        today=state.today,
                        family=state.family,
                    )
                    keep = len(state.messages)
                yield event


def _common_prefix(stored: Sequence[Message], messages: Sequence[Message]) -> int:
    count = 0
    for old, new in zip(stored, messages, strict=False):
        if old != new:
            break
        count += 1
    return count


# --- SQLite ---------------------------------------------------------------------------------------

# Each entry takes the schema from version i to i + 1 (`PRAGMA user_version`). Never edit one
# that shipped: add the next.
MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and their messages, in order.
    """
    CREATE TABLE sessions (
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        today TEXT,
        family TEXT
    );
    CREATE TABLE messages (
        session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    );
    """,
    # 2: when each message was committed, and each step's usage.
    """
    ALTER TABLE messages ADD COLUMN at REAL;
    UPDATE messages SET at = (SELECT updated FROM sessions WHERE name = messages.session);
    CREATE TABLE steps (
        session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        at REAL NOT NULL,
        usage TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore(Store):
    """Sessions in one SQLite file (stdlib `sqlite3`, run in a worker thread).

    `SQLiteStore()` uses `default_store_path()`. The file is created on first use and its schema
    upgraded in place when an older release made it. Every step is one transaction (WAL mode):
    a process killed mid-run leaves every committed step readable.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else default_store_path()
        self._connection: sqlite3.Connection | None = None
        self._guard = threading.Lock()  # one statement batch at a time on the connection

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def work() -> T:
            with self._guard:
                return fn(self._connect())

        return await anyio.to_thread.run_sync(work)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            migrate(connection)
            self._connection = connection
        return self._connection

    async def load(self, name: str) -> Session | None:
        return await self._call(lambda db: _load(db, name))

    async def write(
        self,
        name: str,
        messages: Sequence[Message],
        *,
        keep: int,
        usage: Usage | None,
        run_id: str,
        today: datetime.date,
        family: Family | None,
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(db):
                db.execute(
                    "INSERT INTO sessions (name, created, updated, today, family) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "updated = excluded.updated, family = excluded.family",
                    (name, now, now, today.isoformat(), family),
                )
                db.execute("DELETE FROM messages WHERE session = ? AND seq >= ?", (name, keep))
                db.executemany(
                    "INSERT INTO messages (session, seq, data, at) VALUES (?, ?, ?, ?)",
                    [(name, keep + i, encode_message(m), now) for i, m in enumerate(messages)],
                )
                if usage is not None:
                    db.execute(
                        "INSERT INTO steps (session, seq, run_id, at, usage) VALUES (?, "
                        "(SELECT COUNT(*) FROM steps WHERE session = ?), ?, ?, ?)",
                        (name, name, run_id, now, json.dumps(asdict(usage))),
                    )

        await self._call(work)

    async def sessions(self) -> list[SessionInfo]:
        def work(db: sqlite3.Connection) -> list[SessionInfo]:
            names = db.execute("SELECT name FROM sessions ORDER BY updated DESC, name").fetchall()
            return [info for (name,) in names if (info := _info(db, name)) is not None]

        return await self._call(work)

    async def delete(self, name: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                db.execute("DELETE FROM messages WHERE session = ?", (name,))
                db.execute("DELETE FROM steps WHERE session = ?", (name,))
                return db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount > 0

        return await self._call(work)

    async def aclose(self) -> None:
        def work() -> None:
            with self._guard:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(work)


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to `SCHEMA_VERSION`, one migration per transaction."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DeveloperError(
            f"the session database has schema version {version}, newer than this release's "
            f"{SCHEMA_VERSION}; upgrade llama-agent or use another LLAMA_AGENT_HOME"
        )
    for number in range(version, SCHEMA_VERSION):
        with _transaction(db):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")


class _transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK`): the writer lock is taken up front."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _info(db: sqlite3.Connection, name: str) -> SessionInfo | None:
    row = db.execute(
        "SELECT created, updated, today, family, "
        "(SELECT COUNT(*) FROM messages WHERE session = name) FROM sessions WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    created, updated, today, family, count = row
    usage = _usage(db, name)
    return SessionInfo(
        name=name,
        created=datetime.datetime.fromtimestamp(created, datetime.UTC),
        updated=datetime.datetime.fromtimestamp(updated, datetime.UTC),
        messages=count,
        steps=len(usage.steps),
        tokens=usage.tokens,
        today=datetime.date.fromisoformat(today) if today else None,
        family=family,
    )


def _usage(db: sqlite3.Connection, name: str) -> RunUsage:
    rows = db.execute("SELECT usage FROM steps WHERE session = ? ORDER BY seq", (name,))
    return RunUsage(steps=tuple(Usage(**json.loads(data)) for (data,) in rows))


def _load(db: sqlite3.Connection, name: str) -> Session | None:
    info = _info(db, name)
    if info is None:
        return None
    rows = db.execute(
        "SELECT data, at FROM messages WHERE session = ? ORDER BY seq", (name,)
    ).fetchall()
    return Session(
        info=info,
        messages=tuple(decode_message(data) for data, _ in rows),
        times=tuple(at or 0.0 for _, at in rows),
        usage=_usage(db, name),
    )


# --- messages as stored ---------------------------------------------------------------------------


def encode_message(message: Message) -> str:
    """A message as JSON, every field kept (a call's `1e999` argument too: JSON's `Infinity`)."""
    data: dict[str, Any] = {
        "role": message.role,
        "content": message.content,
        "stop_reason": message.stop_reason,
        "trusted": message.trusted,
    }
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": _plain(c.arguments)}
            for c in message.tool_calls
        ]
    for key in ("raw", "tool_call_id", "name"):
        if getattr(message, key) is not None:
            data[key] = getattr(message, key)
    return json.dumps(data, ensure_ascii=False)


def decode_message(text: str) -> Message:
    data = json.loads(text)
    return Message(
        role=data["role"],
        content=data["content"],
        tool_calls=tuple(
            ToolCall(name=c["name"], arguments=c["arguments"], id=c["id"])
            for c in data.get("tool_calls", ())
        ),
        stop_reason=data["stop_reason"],
        raw=data.get("raw"),
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
        trusted=data["trusted"],
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
