"""Sessions: conversations stored under a name survive the agent, the store and the process.

Each test stores in its own SQLite file under tmp_path and talks to the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import anyio
import pytest

from agent import Agent, Message, SQLiteStore, tool
from agent.errors import DeveloperError, OllamaUnreachableError
from agent.loop import Session, default_store_path
from agent.loop._sessions import MIGRATIONS, SCHEMA_VERSION, encode_message
from agent.testing import OllamaEmulator, ScriptRequest

from .helpers import TODAY, add, by_results, call

pytestmark = pytest.mark.anyio


def _add_then_answer(results: list[str]) -> str:
    if not results:
        return call("add", a=1, b=2)
    return f"The sum is {results[-1]}.<|eot_id|>"


async def test_a_reloaded_session_continues_the_prompt_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    async with OllamaEmulator(by_results(_add_then_answer)) as emu:
        async with Agent(
            host=emu.url, tools=[add], system="Be exact.", store=SQLiteStore(path)
        ) as a:
            first = await a.run("Add 1 and 2.", session="s1")
            await a.store.aclose()
        # A new agent and a new store (a restarted service), no date given: the session's own.
        async with Agent(
            host=emu.url, tools=[add], system="Be exact.", store=SQLiteStore(path)
        ) as b:
            second = await b.run("Again, please.", session="s1")
            await b.store.aclose()

    assert first.answer == second.answer == "The sum is 3."
    before, after = emu.completions[1], emu.completions[2]
    assert before.prompt is not None
    assert after.prompt is not None
    assert after.prompt.startswith(before.prompt + before.completion)
    assert not after.reloaded
    assert second.messages[: len(first.messages)] == first.messages
    assert second.new_from == len(first.messages)
    assert second.today == first.today


async def test_the_store_keeps_messages_usage_and_times_exactly(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    async with (
        OllamaEmulator(by_results(_add_then_answer)) as emu,
        Agent(host=emu.url, tools=[add], today=TODAY, store=store) as agent,
    ):
        started = time.time()
        result = await agent.run(Message(role="user", content="add", trusted=True), session="x")
        session = await store.load("x")
        listed = await store.sessions()
    await store.aclose()

    assert session is not None
    assert session.messages == result.messages
    assert session.messages[-2].tool_call_id  # the call id and the raw completion survive
    assert [m.raw for m in session.messages] == [m.raw for m in result.messages]
    assert session.messages[0].trusted
    assert session.usage == result.usage
    assert all(started - 1 <= t <= time.time() + 1 for t in session.times)
    assert session.info.today == TODAY
    assert session.info.steps == 2
    assert session.info.tokens == result.usage.tokens > 0
    assert [s.name for s in listed] == ["x"]
    assert listed[0].messages == len(result.messages)


async def test_runs_of_one_session_wait_for_each_other(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")

    def reply(request: ScriptRequest) -> str:
        return f"Turn {request.prompt.count('<|start_header_id|>user')}.<|eot_id|>"

    async with (
        OllamaEmulator(reply, latency=0.01) as emu,
        Agent(host=emu.url, today=TODAY, store=store) as agent,
    ):
        results = {}

        async def one(task: str) -> None:
            results[task] = await agent.run(task, session="shared")

        async with anyio.create_task_group() as tg:
            for task in ("first", "second", "third"):
                tg.start_soon(one, task)
        session = await store.load("shared")
    await store.aclose()

    assert session is not None
    assert sorted(r.answer for r in results.values()) == ["Turn 1.", "Turn 2.", "Turn 3."]
    roles = [m.role for m in session.messages]
    assert roles == ["user", "assistant"] * 3  # never two user turns in a row
    assert store._locks == {}  # released when the runs ended


async def test_runs_of_different_sessions_run_at_the_same_time(tmp_path: Path) -> None:
    arrived = {"a": anyio.Event(), "b": anyio.Event()}

    @tool
    async def meet(me: str) -> str:
        """Wait until the other session's run has arrived too.

        Args:
            me: Which run this is.
        """
        arrived[me].set()
        with anyio.fail_after(10):
            await arrived["b" if me == "a" else "a"].wait()
        return "met"

    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return "Met.<|eot_id|>"
        return call("meet", me=request.last_user)

    store = SQLiteStore(tmp_path / "s.db")
    async with (
        OllamaEmulator(script) as emu,
        Agent(host=emu.url, tools=[meet], today=TODAY, store=store) as agent,
    ):
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(agent.run, "a", session="session-a"))
                tg.start_soon(partial(agent.run, "b", session="session-b"))
        names = {s.name for s in await store.sessions()}
    await store.aclose()
    assert names == {"session-a", "session-b"}


async def test_a_failed_first_step_stores_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    async with Agent(host="http://127.0.0.1:9", store=store) as agent:
        with pytest.raises(OllamaUnreachableError):
            await agent.run("hello", session="down")
    assert await store.load("down") is None
    await store.aclose()


async def test_history_and_session_together_are_refused(tmp_path: Path) -> None:
    async with Agent(host="http://127.0.0.1:9", store=SQLiteStore(tmp_path / "s.db")) as agent:
        with pytest.raises(DeveloperError, match="not both"):
            agent.stream("hi", history=[], session="s")
        with pytest.raises(DeveloperError, match="session name"):
            agent.stream("hi", session="")


async def test_a_new_system_prompt_replaces_the_stored_one(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    async with OllamaEmulator(by_results(lambda _: "Ok.<|eot_id|>")) as emu:
        async with Agent(host=emu.url, system="One.", today=TODAY, store=store) as agent:
            await agent.run("hi", session="s")
        async with Agent(host=emu.url, system="Two.", today=TODAY, store=store) as agent:
            await agent.run("again", session="s")
        session = await store.load("s")
        assert await store.delete("s")
        assert not await store.delete("s")
        assert await store.sessions() == []
    await store.aclose()
    assert session is not None
    assert [m.content for m in session.messages] == ["Two.", "hi", "Ok.", "again", "Ok."]


async def test_the_default_store_is_under_llama_agent_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_AGENT_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "sessions.db"
    async with (
        OllamaEmulator(by_results(lambda _: "Ok.<|eot_id|>")) as emu,
        Agent(host=emu.url, today=TODAY) as agent,
    ):
        await agent.run("hi", session="s")
        assert isinstance(agent.store, SQLiteStore)
        assert agent.store.path == tmp_path / "home" / "sessions.db"
    assert (tmp_path / "home" / "sessions.db").exists()
    monkeypatch.delenv("LLAMA_AGENT_HOME")
    assert default_store_path().name == "sessions.db"
    assert "llama-agent" in str(default_store_path())


async def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0])
    old.execute("PRAGMA user_version = 1")
    old.execute("INSERT INTO sessions VALUES ('old', 1e9, 1.5e9, '2024-09-21', '3.1')")
    for seq, message in enumerate(
        [Message(role="user", content="hi"), Message(role="assistant", content="Hey.", raw="Hey.")]
    ):
        old.execute("INSERT INTO messages VALUES ('old', ?, ?)", (seq, encode_message(message)))
    old.commit()
    old.close()

    store = SQLiteStore(path)
    session = await store.load("old")
    await store.aclose()

    assert session is not None
    assert [m.content for m in session.messages] == ["hi", "Hey."]
    assert session.times == (1.5e9, 1.5e9)  # the session's last update, the best there is
    assert session.info.steps == 0
    assert session.info.family == "3.1"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    store = SQLiteStore(path)
    with pytest.raises(DeveloperError, match="newer than this release"):
        await store.sessions()
    await store.aclose()


_CRASHING_CHILD = textwrap.dedent(
    """
    import json, sys, anyio
    from pathlib import Path
    from agent import Agent, SQLiteStore, tool
    from agent.testing import OllamaEmulator, tool_call_text

    marker = Path(sys.argv[2])

    @tool
    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    @tool
    async def hang() -> str:
        "Never returns."
        marker.write_text("in step 3")
        await anyio.sleep_forever()
        return ""

    def script(request):
        step = len(request.tool_results)
        if step < 2:
            return tool_call_text("add", {"a": step, "b": 10})
        return tool_call_text("hang", {})

    async def main():
        async with OllamaEmulator(script) as emu:
            store = SQLiteStore(sys.argv[1])
            async with Agent(host=emu.url, tools=[add, hang], system="S.", store=store) as a:
                await a.run("go", session="crash")

    anyio.run(main)
    """
)


@pytest.mark.slow
def test_a_process_killed_mid_run_keeps_every_finished_step(tmp_path: Path) -> None:
    path, marker = tmp_path / "s.db", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_CHILD, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the child ended before step 3"
            assert time.monotonic() < deadline, "the child never reached step 3"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    async def load() -> Session | None:
        store = SQLiteStore(path)
        try:
            return await store.load("crash")
        finally:
            await store.aclose()

    session = anyio.run(load)
    assert session is not None
    assert [m.role for m in session.messages] == [
        "system", "user", "assistant", "tool", "assistant", "tool",
    ]  # fmt: skip
    assert [json.loads(m.content) for m in session.messages if m.role == "tool"] == [10, 11]
    assert session.info.steps == 2
