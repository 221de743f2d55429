"""`examples/service.py` served by a real uvicorn on 127.0.0.1, its model played by the emulator:
many concurrent SSE sessions, conversations that continue, a disconnect that cancels the run."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from agent.testing import OllamaEmulator, Script, ScriptRequest, tool_call_text

from .conftest import load_example

pytestmark = pytest.mark.anyio

service = load_example("service.py")

FIRST = re.compile(r"What is (\d+) \* (\d+)\?")
FOLLOW_UP = re.compile(r"Add (\d+) to it\.")
ANSWER = re.compile(r"= (\d+)\.")
TURN = ["user", "assistant", "tool", "assistant"]


def calculator_model(request: ScriptRequest) -> str:
    """A stateless model: calls `calculate` for the user's question, then answers with the
    result. A follow-up ("Add 5 to it.") needs the previous answer from the conversation."""
    if request.tool_results:
        expression = json.loads(request.prompt.rsplit("<|python_tag|>", 1)[1].split("<|")[0])
        return f"{expression['parameters']['expression']} = {request.tool_results[-1]}.<|eot_id|>"
    if match := FIRST.fullmatch(request.last_user):
        expression = f"{match[1]} * {match[2]}"
    elif match := FOLLOW_UP.fullmatch(request.last_user):
        earlier = [t.content for t in request.turns if t.role == "assistant" and t.content]
        previous = ANSWER.search(earlier[-1])
        assert previous is not None, earlier
        expression = f"{previous[1]} + {match[1]}"
    else:
        raise AssertionError(f"unexpected task {request.last_user!r}")
    return tool_call_text("calculate", {"expression": expression})


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[OllamaEmulator, httpx.AsyncClient]]:
    """The emulator, the example app on uvicorn (its own agent, made by its lifespan), a client."""
    async with OllamaEmulator(script) as emu:
        server = uvicorn.Server(
            uvicorn.Config(service.create_app(host=emu.url), log_level="warning", lifespan="on")
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(20):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, no event
                    await anyio.sleep(0.01)
            limits = httpx.Limits(max_connections=200)
            url = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                    yield emu, client
            finally:
                server.should_exit = True


async def read_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Parse an SSE body strictly: every message is one `event:` line and one `data:` line whose
    JSON `type` is the event name, then a blank line."""
    assert response.status_code == 200, await response.aread()
    assert response.headers["content-type"].startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    message: list[str] = []
    async for line in response.aiter_lines():
        if line:
            message.append(line)
            continue
        assert len(message) == 2, message
        name = message[0].removeprefix("event: ")
        data = json.loads(message[1].removeprefix("data: "))
        assert message[0].startswith("event: ")
        assert message[1].startswith("data: ")
        assert data["type"] == name
        events.append(data)
        message = []
    assert message == [], "the stream ended in the middle of a message"
    return events


async def turn(client: httpx.AsyncClient, task: str, session: str) -> list[dict[str, Any]]:
    params = {"task": task, "session": session}
    async with client.stream("GET", "/runs/stream", params=params) as response:
        events = await read_events(response)
        assert events[0]["run_id"] == response.headers["x-run-id"]
    return events


def check_turn(events: list[dict[str, Any]], *, task: str, expected: int) -> str:
    """The run is complete and is this task's own; returns its run id."""
    kinds = [e["type"] for e in events]
    tool_step = [
        "run_started",
        "tool_call_parsed",
        "tool_call_validated",
        "tool_call_started",
        "tool_call_finished",
        "step_finished",
    ]
    assert kinds[:6] == tool_step
    assert kinds[6:] == ["text_delta"] * (len(kinds) - 8) + ["step_finished", "run_finished"]
    started, finished = events[0], events[-1]["result"]
    assert started["task"] == task
    assert finished["run_id"] == started["run_id"]
    assert finished["status"] == "answered"
    assert events[4]["name"] == "calculate"
    assert events[4]["result"] == str(expected)
    text = "".join(e["text"] for e in events if e["type"] == "text_delta")
    assert text == finished["answer"]
    assert text.endswith(f" = {expected}.")
    return str(started["run_id"])


async def test_fifty_concurrent_sessions_each_get_their_own_complete_stream() -> None:
    sessions = 50
    run_ids: list[str] = []

    async def session(number: int, client: httpx.AsyncClient) -> None:
        a, b = number + 2, number + 100
        first_task = f"What is {a} * {b}?"
        first = await turn(client, first_task, f"user-{number}")
        run_ids.append(check_turn(first, task=first_task, expected=a * b))
        assert first[0]["history"] == 0  # a fresh conversation (the system prompt is not history)
        # The second turn continues this session's conversation: the model can only know the
        # earlier answer from the history the service kept for this session.
        second_task = f"Add {number} to it."
        second = await turn(client, second_task, f"user-{number}")
        run_ids.append(check_turn(second, task=second_task, expected=a * b + number))
        # This turn's messages only: the task, the call, its result, the answer.
        assert [m["role"] for m in first[-1]["result"]["messages"]] == TURN
        assert second[0]["history"] == 1 + len(TURN)

    async with serving(calculator_model) as (emu, client), anyio.create_task_group() as tg:
        for number in range(sessions):
            tg.start_soon(session, number, client)

    assert len(set(run_ids)) == 2 * sessions
    assert len(emu.completions) == 4 * sessions  # two model requests per turn
    assert all(r.finished and not r.cancelled for r in emu.completions)


async def test_closing_the_stream_cancels_the_run_and_frees_the_session() -> None:
    arrived = anyio.Event()

    async def model(request: ScriptRequest) -> str:
        if request.last_user == "Think forever.":
            arrived.set()
            await anyio.sleep_forever()
        return calculator_model(request)

    async with serving(model) as (emu, client):
        params = {"task": "Think forever.", "session": "ada"}
        async with client.stream("GET", "/runs/stream", params=params) as response:
            lines = response.aiter_lines()
            assert await anext(lines) == "event: run_started"
            with anyio.fail_after(20):
                await arrived.wait()
            # One turn at a time per session.
            busy = await client.get("/runs/stream", params={"task": "What is 1 * 2?", **params})
            assert busy.status_code == 409
            assert "already running" in busy.json()["error"]
        # The client left: the service stopped the run, which closed its request to the model.
        with anyio.fail_after(20):
            await emu.wait_idle()
        [request] = emu.completions
        assert request.cancelled
        # The session is free again, and the cancelled turn left no trace in its history.
        events = await turn(client, "What is 3 * 4?", "ada")
        check_turn(events, task="What is 3 * 4?", expected=12)
        assert events[0]["history"] == 0  # a fresh conversation (the system prompt is not history)
        messages = events[-1]["result"]["messages"]
        assert [m["role"] for m in messages] == TURN
        assert messages[0]["content"] == "What is 3 * 4?"


async def test_post_runs_returns_the_result_and_reports_ollama_down_as_502() -> None:
    async with serving(calculator_model) as (emu, client):
        response = await client.post("/runs", json={"task": "What is 6 * 7?", "session": "bob"})
        assert response.status_code == 200
        data = response.json()
        assert data["status"] == "answered"
        assert data["answer"] == "6 * 7 = 42."
        assert data["steps"] == 2
        assert [m["role"] for m in data["messages"]] == TURN
        follow_up = await client.post("/runs", json={"task": "Add 8 to it.", "session": "bob"})
        assert follow_up.json()["answer"] == "42 + 8 = 50."

        assert (await client.post("/runs", json={"task": ""})).status_code == 422
        bad_session = {"task": "What is 1 * 1?", "session": "no spaces"}
        assert (await client.post("/runs", json=bad_session)).status_code == 422

        await emu.refuse_connections()
        down = await client.post("/runs", json={"task": "What is 1 * 1?", "session": "bob"})
        assert down.status_code == 502
        assert down.json()["error"].startswith("OllamaUnreachableError: ")
        # A failed turn does not lock the session.
        await emu.accept_connections()
        again = await client.post("/runs", json={"task": "Add 1 to it.", "session": "bob"})
        assert again.json()["answer"] == "50 + 1 = 51."
