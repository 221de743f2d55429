"""A FastAPI service that runs the agent and streams each run's events as server-sent events.

One process serves many concurrent runs: a single `Agent`, made when the app starts, is shared
by every request (it keeps no per-run state; its HTTP connection pool to Ollama is shared too).
Ollama itself generates for `OLLAMA_NUM_PARALLEL` requests at a time and queues the others.

    pip install fastapi uvicorn        # or: pip install -e '.[dev]'
    python examples/service.py         # serves http://127.0.0.1:8000, Ollama at $OLLAMA_HOST

    curl -N 'http://127.0.0.1:8000/runs/stream?task=What+is+2**100%3F&session=ada'
    curl -N 'http://127.0.0.1:8000/runs/stream?task=And+divided+by+7%3F&session=ada'
    curl -s http://127.0.0.1:8000/runs -H 'content-type: application/json' -d '{"task": "17*23?"}'

- `GET /runs/stream?task=...[&session=...]`: `text/event-stream`, one SSE message per run event
  (`event: text_delta`, `data: {...}`; see `agent.event_to_dict`), ending with `run_finished`,
  whose data holds the result. A browser reads it with `new EventSource(url)`.
- `POST /runs` with `{"task": ..., "session": ...}`: waits, and returns the result as JSON.
- `session` (optional) names a conversation: each turn continues the last answered one. One
  turn at a time per session (409 otherwise). Sessions live in memory: use your own store
  (Redis, a database) to keep them across restarts or share them between processes;
  `RunResult.to_dict()` and `Message.from_dict()` give you their JSON form.
- Closing the connection cancels the run: its request to Ollama and its tool calls stop.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import Agent, Event, Limits, RunFinished, RunResult, event_to_dict
from agent.errors import RunError
from llama_agent_tools.math import math_tools

SYSTEM = "You are a helpful assistant. Use the calculate tool for any arithmetic."
MAX_TASK = 8000  # characters
SESSION_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


@dataclass(frozen=True, kw_only=True, eq=False)
class Turn:
    """One running turn of a session (`session=None`: a one-off run)."""

    session: str | None
    history: RunResult | None


class Sessions:
    """The last answered result of each conversation, and the turn each one is running."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._results: OrderedDict[str, RunResult] = OrderedDict()
        self._running: dict[str, Turn] = {}
        self._capacity = capacity

    def begin(self, session: str | None) -> Turn:
        """Start a turn, continuing the session's last answer. 409 if a turn is running."""
        if session is None:
            return Turn(session=None, history=None)
        if session in self._running:
            raise HTTPException(409, f"session {session!r} is already running a turn; wait for it")
        turn = Turn(session=session, history=self._results.get(session))
        self._running[session] = turn
        return turn

    def end(self, turn: Turn, result: RunResult | None = None) -> None:
        """The turn is over: keep its result if it answered. Ending a turn twice is harmless,
        and never ends a later turn of the same session."""
        if turn.session is None or self._running.get(turn.session) is not turn:
            return
        del self._running[turn.session]
        if result is not None and result.ok:
            self._results[turn.session] = result
            self._results.move_to_end(turn.session)
            while len(self._results) > self._capacity:  # forget the least recently used
                self._results.popitem(last=False)


def turn_data(result: RunResult) -> dict[str, Any]:
    """A result as JSON with this turn's messages only (task, calls, results, answer): the
    session's earlier turns stay on the server."""
    data = result.to_dict()
    data["messages"] = data["messages"][result.new_from :]
    del data["new_from"]
    return data


def sse(event: Event) -> str:
    """One SSE message. `json.dumps` escapes newlines, so `data:` is always a single line."""
    if isinstance(event, RunFinished):
        payload = {"type": event.type, "result": turn_data(event.result)}
    else:
        payload = event_to_dict(event)
    data = json.dumps(payload, ensure_ascii=False)
    return f"event: {event.type}\ndata: {data}\n\n"


class RunRequest(BaseModel):
    task: str = Field(min_length=1, max_length=MAX_TASK)
    session: str | None = Field(default=None, pattern=SESSION_NAME)


def create_app(*, host: str | None = None, agent: Agent | None = None) -> FastAPI:
    """The service. `host`: Ollama's URL (else `OLLAMA_HOST`); `agent`: use this one instead
    (the caller then closes it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if agent is not None:
            app.state.agent = agent
            yield
            return
        limits = Limits(max_steps=8, run_timeout=300)
        made = Agent("llama3.1", tools=math_tools(), system=SYSTEM, host=host, limits=limits)
        async with made:  # closes the connection pool at shutdown
            app.state.agent = made
            yield

    app = FastAPI(title="llama-agent service", lifespan=lifespan)
    sessions = Sessions()

    @app.get("/runs/stream")
    async def stream_run(
        request: Request,
        task: Annotated[str, Query(min_length=1, max_length=MAX_TASK)],
        session: Annotated[str | None, Query(pattern=SESSION_NAME)] = None,
    ) -> StreamingResponse:
        turn = sessions.begin(session)  # before the response starts, so a 409 can be sent
        run = request.app.state.agent.stream(task, history=turn.history)

        async def events() -> AsyncIterator[str]:
            # When the client goes away, Starlette cancels this generator; leaving
            # `async with run` then stops the run (its HTTP stream and its tool calls).
            try:
                async with run:
                    async for event in run:
                        if isinstance(event, RunFinished):
                            # End the turn before the client sees the end, so it can send its
                            # next turn at once.
                            sessions.end(turn, event.result)
                        yield sse(event)
            finally:
                sessions.end(turn)

        headers = {
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once, do not buffer
            "X-Run-Id": run.run_id,
        }
        # The background task ends the turn even if the client left before the stream began.
        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers=headers,
            background=BackgroundTask(sessions.end, turn),
        )

    @app.post("/runs")
    async def run_to_end(request: Request, body: RunRequest) -> dict[str, Any]:
        turn = sessions.begin(body.session)
        result: RunResult | None = None
        try:
            result = await request.app.state.agent.run(body.task, history=turn.history)
        except RunError as exc:
            # Ollama down, model missing, context overflow: the operator's problem, not the
            # client's; the message says what to do.
            raise HTTPException(502, f"{type(exc).__name__}: {exc}") from exc
        finally:
            sessions.end(turn, result)
        return turn_data(result)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and the router's (404, 405)
    async def error_as_json(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
