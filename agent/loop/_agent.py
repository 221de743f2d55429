"""`Agent`: a model, its tools and a backend, run as a loop until the model answers."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from agent import backends
from agent.backends import Backend, GenerateOptions
from agent.errors import DeveloperError, RunError
from agent.llama3 import Message, ToolFormat
from agent.toolkit import LiveToolbox, Tool, Toolbox, ToolSource, split_sources

from ._events import Approver
from ._result import Limits, RunResult
from ._run import History, RunSpec, RunState, RunStream, opening_messages, run_events
from ._sessions import SQLiteStore, Store, check_session_name, session_events


class Closeable(Protocol):
    """Anything with an async `aclose()`: a sandbox pool, a client, a connection."""

    async def aclose(self) -> None: ...


class Agent:
    """A Llama 3.x model with tools, served by Ollama (or any `Backend`).

    ```python
    async with Agent("llama3.1", tools=[get_weather], system="Be brief.") as agent:
        result = await agent.run("Weather in Paris?")
        print(result.answer)
    ```

    - `tools`: `Tool`s, plain functions (made into tools with `Tool.from_function`) and tool
      sources such as `MCPTools` (an MCP server's tools), which start when the agent opens
      (`async with`, or `open()`; else at its first run) and stop when it closes.
    - `system`: the system prompt (trusted text); the date lines and tool definitions are
      added Meta's way around it.
    - `host`: the Ollama URL; else `OLLAMA_HOST`, else `http://127.0.0.1:11434`.
    - `backend`: use this backend instead (then `host` is ignored). The agent does not close
      a backend it was given; it closes the one it made (`aclose()` or `async with`).
    - `resources`: what the tools hold that must be released with the agent (a `Sandbox`
      behind `code_tools(runner=...)`, a client...): anything with an async `aclose()`. The
      agent closes them, last given first, in `aclose()`; `load_agent` passes the sandbox of
      the `code` tool here.
    - `options`: sampling settings for every request; `limits`: when a run must stop.
    - `tool_format`, `tool_choice`, `today`: passed to `agent.llama3.render_prompt`
      (`tool_choice`: `"auto"`, `"required"`, `"none"` or a tool name). `today=None` takes
      the date when a run starts (or the date of the run a conversation continues, so its
      prompt prefix and the server's cache stay valid).
    - `approve`: decides on calls to tools made with `approval=True`: given the
      `ApprovalRequested` event, returns `"yes"`, `"no"` or `"always"` (sync or async; see
      "Approval of calls" in the README). It is asked unless the stream's reader decided on the
      event; with neither, the call is refused. Deciding counts against `limits.run_timeout`.
    - `name`: the agent's name in traces (`invoke_agent {name}` spans: see "Traces" in the
      README).

    The prompt format (3.1's, or 3.2/3.3's) follows the Llama release the server reports for
    `model` (`/api/show`, asked once per backend), so a custom name such as `myassistant`
    built on Llama 3.2 gets 3.2's format; when the server does not say, the model's name
    decides. The server's "tools" capability is not required: it describes Ollama's template,
    which raw mode does not use; a model without it gets the native tool prompt anyway and the
    result carries a warning.

    An agent holds no per-run state: one agent serves any number of concurrent runs, all
    sharing its backend's connection pool.
    """

    def __init__(
        self,
        model: str = "llama3.1",
        *,
        tools: Iterable[Tool | Callable[..., Any] | ToolSource] = (),
        system: str | None = None,
        host: str | None = None,
        backend: Backend | None = None,
        options: GenerateOptions | None = None,
        limits: Limits | None = None,
        tool_format: ToolFormat | None = None,
        tool_choice: str = "auto",
        today: datetime.date | None = None,
        resources: Iterable[Closeable] = (),
        store: Store | None = None,
        name: str = "llama-agent",
        approve: Approver | None = None,
    ) -> None:
        given, sources = split_sources(tools)
        toolbox = Toolbox(given)  # plain functions become tools there
        live = LiveToolbox(toolbox.tools, sources) if sources else None
        if live is None:  # with sources, checked once they are open and their tools known
            _check_tool_choice(tool_choice, toolbox)
        self._owns_backend = backend is None
        # `backends.OllamaBackend` is looked up here, when needed: it loads the HTTP stack.
        self._backend: Backend = backend if backend is not None else backends.OllamaBackend(host)
        self._system = system
        self._today = today
        self._resources = tuple(resources)
        self._store = store
        self._owns_store = store is None
        self._spec = RunSpec(
            backend=self._backend,
            model=model,
            toolbox=toolbox,
            options=options or GenerateOptions(),
            limits=limits or Limits(),
            tool_format=tool_format,
            tool_choice=tool_choice,
            live=live,
            name=name,
            approve=approve,
        )

    # --- running -------------------------------------------------------------------------

    async def run(
        self,
        task: str | Message,
        *,
        history: History = None,
        deps: Any = None,
        session: str | None = None,
    ) -> RunResult:
        """Run `task` to the end and return the result.

        Limits do not raise: `result.status` says which one ended the run (see `RunStatus`).
        A `RunError` from the backend (`OllamaUnreachableError`, `ModelNotFoundError`,
        `ContextOverflowError`, ...) is raised, with the conversation so far on its `result`
        attribute (status `"error"`), so nothing is lost. Cancelling the call cancels the HTTP
        stream and every running tool call, and propagates.

        `task`: the user's request, untrusted (special-token text in it is neutralized); pass
        `Message(role="user", content=..., trusted=True)` for text the program vouches for.
        `history`: an earlier `RunResult` (or its messages) to continue. `deps`: handed to
        tools that take a `RunContext`. `session`: continue the conversation stored under this
        name in `store` (instead of `history`), committing each step as it finishes; runs of
        one session wait for each other. A call that needs approval is decided by the agent's
        `approve` callback; without one it is refused.
        """
        # Quiet: nothing reads the events here, and each would climb every level (per chunk,
        # for the TextDeltas).
        stream = self._stream(task, history=history, deps=deps, session=session, quiet=True)
        async with stream:
            async for _ in stream:
                pass
        result = stream.result
        if isinstance(result.exception, RunError):
            result.exception.result = result
            raise result.exception
        return result

    def stream(
        self,
        task: str | Message,
        *,
        history: History = None,
        deps: Any = None,
        task_group: TaskGroup | None = None,
        session: str | None = None,
    ) -> RunStream:
        """The run's events as they happen (see `RunStream`), ending with `RunFinished`.

        ```python
        async with agent.stream("Weather in Paris?") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    print(event.text, end="")
        ```

        The calls of a step all run at once. By default each step's `ToolCallFinished` events
        come, in the model's order, when its last call ends: a bare async generator cannot keep
        tasks running while its consumer holds an event. Give a `task_group` that outlives the
        iteration to have each call reported the moment it ends (a UI showing progress): the
        calls then run in that group, and the run still stops and waits for them when the
        stream is closed or cancelled. `history`, `deps`, `session`: as for `run()`.
        """
        return self._stream(
            task, history=history, deps=deps, task_group=task_group, session=session, quiet=False
        )

    def _stream(
        self,
        task: str | Message,
        *,
        history: History,
        deps: Any,
        session: str | None,
        quiet: bool,
        task_group: TaskGroup | None = None,
    ) -> RunStream:
        if session is not None:
            if history is not None:
                raise DeveloperError(
                    "give history= or session=, not both: a session is its own history"
                )
            return self._session_stream(
                task, session, deps=deps, task_group=task_group, quiet=quiet
            )
        messages, new_from = opening_messages(task, system=self._system, history=history)
        state = RunState(
            run_id=uuid.uuid4().hex,
            model=self.model,
            messages=messages,
            new_from=new_from,
            limits=self._spec.limits,
            today=self._run_date(history),
            history=len(history.messages if isinstance(history, RunResult) else history or ()),
        )
        events = run_events(self._spec, state, deps=deps, task_group=task_group, quiet=quiet)
        return RunStream(events, state)

    def _session_stream(
        self,
        task: str | Message,
        name: str,
        *,
        deps: Any,
        task_group: TaskGroup | None,
        quiet: bool,
    ) -> RunStream:
        check_session_name(name)
        # The session fills in the messages and the date once it is loaded, as the run starts.
        state = RunState(
            run_id=uuid.uuid4().hex,
            model=self.model,
            messages=[],
            new_from=0,
            limits=self._spec.limits,
            today=datetime.date.today(),
        )
        events = session_events(
            self.store,
            name,
            state,
            task=task,
            system=self._system,
            today=self._today,
            events=lambda: run_events(
                self._spec, state, deps=deps, task_group=task_group, quiet=quiet
            ),
        )
        return RunStream(events, state)

    @property
    def store(self) -> Store:
        """Where sessions are kept (made on first use when none was given)."""
        if self._store is None:
            self._store = SQLiteStore()
        return self._store

    def render(self, task: str | Message | None, *, history: History = None) -> str:
        """The exact native prompt the run's first request would send, `<|begin_of_text|>`
        included (the Ollama backend leaves that token's text out on the wire).

        `task=None` renders the history as it stands: with `history=stream.result` after a
        `StepFinished`, that is the prompt of the run's next request.

        No server is asked: the format follows the model's name, or, when `history` is a
        `RunResult`, the family the server reported for that run (`RunResult.family`).
        """
        messages, _ = opening_messages(task, system=self._system, history=history)
        family = history.family if isinstance(history, RunResult) else None
        spec = self._spec
        if spec.live is not None:
            spec = dataclasses.replace(spec, toolbox=spec.live.toolbox)
        return spec.render(messages, today=self._run_date(history), family=family)

    def _run_date(self, history: History) -> datetime.date:
        if self._today is not None:
            return self._today
        if isinstance(history, RunResult) and history.today is not None:
            return history.today
        return datetime.date.today()

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> Agent:
        """Start the tool sources (MCP servers) and list their tools; `async with agent` calls
        it. Raises `MCPServerError` for a server that does not start, `ToolDefinitionError` for
        two tools with one name (naming both sources); what was started is stopped again."""
        live = self._spec.live
        if live is not None:
            toolbox = await live.open()
            try:
                _check_tool_choice(self._spec.tool_choice, toolbox)
            except DeveloperError:
                await live.aclose()
                raise
        return self

    async def aclose(self) -> None:
        """Close the backend if this agent made it, and the `resources` it was given.

        Everything is closed even when one of them fails (the failure is raised once all are
        closed), and even when the caller is being cancelled.
        """
        # Shielded: `async with agent` left by a cancellation must still free them.
        with anyio.CancelScope(shield=True):
            async with AsyncExitStack() as stack:
                if self._owns_backend:
                    stack.push_async_callback(self._backend.aclose)
                for resource in self._resources:
                    stack.push_async_callback(resource.aclose)
                if self._owns_store and self._store is not None:
                    stack.push_async_callback(self._store.aclose)
                if self._spec.live is not None:
                    stack.push_async_callback(self._spec.live.aclose)

    async def __aenter__(self) -> Agent:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- what it is ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def model(self) -> str:
        return self._spec.model

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools; those of tool sources once the agent is open (as of its latest run)."""
        live = self._spec.live
        return tuple((live.toolbox if live is not None else self._spec.toolbox).tools)

    @property
    def system(self) -> str | None:
        return self._system

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def resources(self) -> tuple[Closeable, ...]:
        """What `aclose()` closes besides the backend it made."""
        return self._resources

    @property
    def tool_format(self) -> ToolFormat | None:
        return self._spec.tool_format

    @property
    def tool_choice(self) -> str:
        return self._spec.tool_choice

    @property
    def options(self) -> GenerateOptions:
        return self._spec.options

    @property
    def limits(self) -> Limits:
        return self._spec.limits

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.tools)
        return f"Agent(model={self.model!r}, tools=[{names}])"


def _check_tool_choice(tool_choice: str, toolbox: Toolbox) -> None:
    if tool_choice not in ("auto", "required", "none") and tool_choice not in toolbox:
        raise DeveloperError(
            f"tool_choice '{tool_choice}' is not 'auto', 'required', 'none' or one of the "
            f"tools ({', '.join(toolbox.callable_names) or 'there are none'}); fix "
            "tool_choice or add the tool"
        )
