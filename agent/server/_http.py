"""`AgentServer`: one agent behind HTTP, as an ASGI app (Starlette), and `serve` to run it.

Routes: `GET /v1/models`, `POST /v1/chat/completions` (OpenAI's, streamed or not), `POST
/v1/agent/events` (the agent's typed events as server-sent events: `event: <type>`, `data:
<event_to_dict>`), `POST /v1/agent/runs` (the whole `RunResult.to_dict()`). A run continues a
session given by the `X-Session-Id` header or a `session` body field.

API keys (`Authorization: Bearer KEY`) are required on every route once any is configured;
without keys only loopback clients are served (and `serve` refuses to listen elsewhere).

Shutdown drains: new runs get 503, runs in flight get `grace` seconds to finish, then are
cancelled the way `RunStream` cancels (HTTP stream closed, tools stopped) and their responses
end with the cancelled result, not a dropped connection.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agent.llama3 import Message
from agent.loop import Agent, Event, RunFinished, RunResult, RunStream, TextDelta, event_to_dict

log = logging.getLogger("agent.server")

API_KEY_VARIABLE = "LLAMA_AGENT_API_KEY"
"""The environment variable `llama-agent serve` reads API keys from (comma-separated)."""

# Events of a run that are not text or its ends: what `tool_events` adds to a chat stream.
_FRAME_EVENTS = frozenset({"run_started", "text_delta", "run_finished"})


def is_loopback(host: str) -> bool:
    """`127.0.0.0/8`, `::1` or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Run:
    """One run in flight, so a shutdown can stop it between two awaits of its stream."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        if self.scope is not None:
            self.scope.cancel()


class AgentServer:
    """Serve `agent` over HTTP. The instance is the ASGI app:

    ```python
    server = AgentServer(agent, api_keys=["secret"])
    uvicorn.run(server, host="127.0.0.1", port=8000)      # or mount it in your own app:
    app = Starlette(routes=[Mount("/llama", app=server)], lifespan=server.lifespan)
    ```

    - `model_name`: the name `/v1/models` lists and requests may give (the agent's model).
    - `api_keys`: accepted bearer tokens; none means loopback clients only.
    - `grace`: seconds runs in flight get to finish at shutdown before they are cancelled.

    `lifespan` drains at shutdown; an app that mounts the server passes it on (above), or calls
    `await server.drain()` itself.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        model_name: str | None = None,
        api_keys: Sequence[str] = (),
        grace: float = 10.0,
    ) -> None:
        self.agent = agent
        self.model_name = model_name or agent.model
        self._keys = tuple(k.encode() for k in api_keys if k)
        self.grace = grace
        self._runs: set[_Run] = set()
        self._draining = False
        self._idle: anyio.Event | None = None  # set when the last run in flight ends
        self._app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/agent/events", self._events, methods=["POST"]),
                Route("/v1/agent/runs", self._run_json, methods=["POST"]),
            ],
            lifespan=lambda _: self.lifespan(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    @property
    def requires_key(self) -> bool:
        return bool(self._keys)

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    # --- shutdown ----------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.drain()

    async def drain(self, grace: float | None = None) -> None:
        """Refuse new runs, give those in flight `grace` seconds, then cancel the rest and
        wait (shielded) until they have stopped."""
        self._draining = True
        grace = self.grace if grace is None else grace
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(grace):
                await self._until_idle()
            if self._runs:
                log.warning("cancelling %d run(s) still in flight at shutdown", len(self._runs))
                for run in list(self._runs):
                    run.stop()
                with anyio.move_on_after(30):
                    await self._until_idle()

    async def _until_idle(self) -> None:
        while self._runs:
            self._idle = anyio.Event()
            await self._idle.wait()

    # --- running -----------------------------------------------------------------------------

    async def _drive(self, stream: RunStream) -> AsyncIterator[Event]:
        """The stream's events, ending with `RunFinished` even when a shutdown cancels it.

        Each await of the stream gets its own cancel scope, and nothing is yielded inside one,
        so the consumer (a response body) can be suspended or cancelled at any point.
        """
        run = _Run()
        self._runs.add(run)
        try:
            async with stream:
                while not run.stopped:
                    with anyio.CancelScope() as run.scope:
                        try:
                            event = await anext(stream)
                        except StopAsyncIteration:
                            return
                    run.scope = None
                    if run.stopped:
                        break
                    yield event
            # Stopped by a shutdown: the stream is closed (its run cancelled) by now.
            yield RunFinished(result=stream.result)
        finally:
            self._runs.discard(run)
            if not self._runs and self._idle is not None:
                self._idle.set()

    def _stream(self, task: Message, history: Sequence[Message], session: str | None) -> RunStream:
        if session is not None:
            return self.agent.stream(task, session=session)
        return self.agent.stream(task, history=list(history) or None)

    # --- routes ------------------------------------------------------------------------------

    def _refused(self, request: Request) -> Response | None:
        if self._keys:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            given = key.strip().encode()
            if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(given, k) for k in self._keys
            ):
                body = error_body("a valid API key is required", kind="invalid_request_error")
                return JSONResponse(body, status_code=401, headers={"www-authenticate": "Bearer"})
        elif request.client is not None and not is_loopback(request.client.host):
            body = error_body(
                "this server has no API keys, so it serves loopback clients only",
                kind="invalid_request_error",
            )
            return JSONResponse(body, status_code=403)
        if self._draining and request.method == "POST":
            body = error_body("the server is shutting down", kind="server_error")
            return JSONResponse(body, status_code=503, headers={"retry-after": "5"})
        return None

    async def _body(self, request: Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not JSON: {exc}") from exc

    async def _models(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        model = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "llama-agent"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _chat(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            chat = parse_chat_request(
                await self._body(request), request.headers, served=(self.model_name,)
            )
            stream = self._stream(chat.task, chat.history, chat.session)
        except RequestError as exc:
            return _error(exc)
        if chat.stream:
            return _sse(self._chat_chunks(stream, chat))
        events: list[dict[str, Any]] = []
        result = None
        async for event in self._drive(stream):
            if isinstance(event, RunFinished):
                result = event.result
            elif chat.tool_events and event.type not in _FRAME_EVENTS:
                events.append(event_to_dict(event))
        assert result is not None  # `_drive` always ends with RunFinished
        if result.status == "error":
            return _run_error(result)
        body = completion(
            result,
            model=self.model_name,
            session=chat.session,
            events=events if chat.tool_events else None,
        )
        return JSONResponse(body)

    async def _chat_chunks(self, stream: RunStream, chat: ChatRequest) -> AsyncIterator[str]:
        chunks = Chunks(stream.run_id, self.model_name)
        yield _data(chunks.delta({"role": "assistant", "content": ""}))
        async for event in self._drive(stream):
            if isinstance(event, TextDelta):
                yield _data(chunks.delta({"content": event.text}))
            elif isinstance(event, RunFinished):
                result = event.result
                if result.status == "error":
                    yield _data(_run_error_body(result))
                else:
                    yield _data(chunks.end(result, chat.session))
                    if chat.include_usage:
                        yield _data(chunks.usage(result))
            elif chat.tool_events and event.type not in _FRAME_EVENTS:
                yield _data(chunks.event(event_to_dict(event)))
        yield "data: [DONE]\n\n"

    async def _native(self, request: Request) -> RunStream:
        body = await self._body(request)
        if not isinstance(body, Mapping) or not isinstance(body.get("task"), str):
            raise RequestError("the body must be an object with a 'task' string")
        session = request.headers.get(SESSION_HEADER) or body.get("session")
        if session is not None and not isinstance(session, str):
            raise RequestError("'session' must be a string")
        return self._stream(Message(role="user", content=body["task"]), (), session)

    async def _events(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            stream = await self._native(request)
        except RequestError as exc:
            return _error(exc)

        async def frames() -> AsyncIterator[str]:
            async for event in self._drive(stream):
                data = json.dumps(event_to_dict(event), ensure_ascii=False)
                yield f"event: {event.type}\ndata: {data}\n\n"

        return _sse(frames())

    async def _run_json(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            stream = await self._native(request)
        except RequestError as exc:
            return _error(exc)
        result = None
        async for event in self._drive(stream):
            if isinstance(event, RunFinished):
                result = event.result
        assert result is not None
        return JSONResponse(result.to_dict(), status_code=502 if result.status == "error" else 200)


def _data(payload: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _sse(frames: AsyncIterator[str]) -> StreamingResponse:
    # no-cache and no proxy buffering: each event reaches the client as it happens.
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


def _error(exc: RequestError) -> JSONResponse:
    kind = "invalid_request_error"
    return JSONResponse(error_body(str(exc), kind=kind, code=exc.code), status_code=exc.status)


def _run_error_body(result: RunResult) -> dict[str, Any]:
    kind = type(result.exception).__name__ if result.exception else "RunError"
    return error_body(result.error or "the run failed", kind="server_error", code=kind)


def _run_error(result: RunResult) -> JSONResponse:
    return JSONResponse(_run_error_body(result), status_code=502)


# --- running a server -----------------------------------------------------------------------------


async def serve(
    server: AgentServer, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> None:
    """Run `server` with uvicorn until SIGINT or SIGTERM, then drain it (see `AgentServer`).

    Refuses a non-loopback `host` when the server has no API key.
    """
    import uvicorn  # the `server` extra; imported here so `import agent.server` stays light

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn raises SIGINT/SIGTERM again once it has shut down, so the process dies of
            # it; a server that drained cleanly returns instead (exit status 0).
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()

    if not is_loopback(host) and not server.requires_key:
        raise PermissionError(
            f"refusing to listen on {host} without an API key: pass --api-key or set "
            f"{API_KEY_VARIABLE}, or listen on 127.0.0.1"
        )
    config = uvicorn.Config(
        server,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(server.grace) + 30,
    )
    http = _Server(config)

    async def drain_on_exit() -> None:
        # uvicorn waits for open connections before the lifespan ends: streams must end first.
        while not http.should_exit:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
            await anyio.sleep(0.05)
        await server.drain()

    async with anyio.create_task_group() as group:
        group.start_soon(drain_on_exit)
        await http.serve()
        group.cancel_scope.cancel()


SESSION_HEADER = "x-session-id"
TOOL_EVENTS_HEADER = "x-tool-events"


class RequestError(Exception):
    """The request cannot be served as sent (HTTP 400 or 404, OpenAI's error body)."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """What the server takes from a `/v1/chat/completions` body."""

    task: Message
    history: tuple[Message, ...]
    stream: bool
    include_usage: bool
    session: str | None
    tool_events: bool


def parse_chat_request(
    body: Any, headers: Mapping[str, str], *, served: Sequence[str]
) -> ChatRequest:
    """Validate the body; the last message is the task, the ones before it the history."""
    if not isinstance(body, Mapping):
        raise RequestError("the body must be a JSON object")
    model = body.get("model")
    if model is not None and model not in served:
        raise RequestError(
            f"model '{model}' is not served here; GET /v1/models lists {', '.join(served)}",
            status=404,
            code="model_not_found",
        )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list")
    messages = [_message(m, i) for i, m in enumerate(raw)]
    task = messages[-1]
    if task.role != "user":
        raise RequestError(f"the last message must be the user's, got role '{task.role}'")
    options = body.get("stream_options")
    session = headers.get(SESSION_HEADER) or body.get("session")
    if session is not None and (not isinstance(session, str) or not session.strip()):
        raise RequestError("'session' must be a non-empty string")
    tool_events = body.get("tool_events", headers.get(TOOL_EVENTS_HEADER, "") == "true")
    return ChatRequest(
        task=task,
        history=tuple(messages[:-1]),
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        session=session,
        tool_events=bool(tool_events),
    )


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _message(data: Any, index: int) -> Message:
    if not isinstance(data, Mapping):
        raise RequestError(f"messages[{index}] must be an object")
    role = _ROLES.get(data.get("role", ""))
    if role is None:
        raise RequestError(
            f"messages[{index}]: role '{data.get('role')}' is not accepted (system, developer, "
            "user, assistant): the agent runs its own tools, so a client's tool results have "
            "no call to answer"
        )
    if role == "assistant" and data.get("tool_calls"):
        raise RequestError(f"messages[{index}]: the agent makes its own tool calls")
    # Untrusted, whoever sent it: special-token text in it is neutralized when rendered.
    return Message(role=role, content=_text(data.get("content"), index))  # type: ignore[arg-type]


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise RequestError(f"messages[{index}].content must be a string or a list of parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                f"messages[{index}].content: only text parts are accepted (got {kind!r}); "
                "Llama 3.1's native tool format is text only"
            )
        texts.append(part["text"])
    return "\n".join(texts)


# --- what goes back -------------------------------------------------------------------------------


def finish_reason(result: RunResult) -> str:
    """`stop` for an answer, `length` for one cut off; a limit that ended the run early is a
    `stop` too, with the status in the `llama_agent` field."""
    return "length" if result.status == "length" else "stop"


def usage(result: RunResult) -> dict[str, int]:
    total = result.usage.total
    return {
        "prompt_tokens": total.prompt_eval_count,
        "completion_tokens": total.eval_count,
        "total_tokens": total.prompt_eval_count + total.eval_count,
    }


def extension(result: RunResult, session: str | None) -> dict[str, Any]:
    """The `llama_agent` field: what an OpenAI response has no place for."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "steps": result.steps,
        "session": session,
        "warnings": list(result.warnings),
    }


def completion(
    result: RunResult, *, model: str, session: str | None, events: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """A whole `chat.completion` object."""
    extra = extension(result, session)
    if events is not None:
        extra["events"] = events
    return {
        "id": f"chatcmpl-{result.run_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage(result),
        "llama_agent": extra,
    }


class Chunks:
    """The `chat.completion.chunk` objects of one streamed response."""

    def __init__(self, run_id: str, model: str) -> None:
        self.id = f"chatcmpl-{run_id}"
        self.model = model
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Tool activity, for clients that asked: no choices, so other clients skip it."""
        return self._chunk([], llama_agent={"event": event})

    def usage(self, result: RunResult) -> dict[str, Any]:
        return self._chunk([], usage=usage(result))

    def end(self, result: RunResult, session: str | None) -> dict[str, Any]:
        chunk = self.delta({}, finish_reason(result))
        chunk["llama_agent"] = extension(result, session)
        return chunk
