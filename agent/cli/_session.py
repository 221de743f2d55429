"""What each command does once its arguments are parsed: load the config, build the agent, run
it (a task, or a chat turn by turn), print, and pick the exit code.

Every expected failure (a bad config, Ollama down, a missing model...) becomes one message on
stderr and its exit code; only a bug shows a traceback.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from rich.json import JSON
from rich.markup import escape

from agent.backends import ModelInfo
from agent.cli._app import ExitCode, exit_code_for_error, exit_code_for_result
from agent.cli._check import run_checks
from agent.cli._output import Printer, pull_model
from agent.config import build_agent, build_tools, load_config
from agent.errors import ConfigError, LlamaAgentError, ModelNotFoundError
from agent.llama3 import ToolFormat, render_prompt
from agent.loop import Agent, RunResult, RunStarted, StepFinished

if TYPE_CHECKING:
    from agent.backends import OllamaBackend

__all__ = [
    "Renderer",
    "chat",
    "chat_session",
    "check",
    "ensure_model",
    "prompt",
    "prompt_renderer",
    "read_in_daemon_thread",
    "run",
    "run_task",
    "tools",
]


# --- the commands ------------------------------------------------------------------------------


def run(
    config: Path,
    task: str,
    *,
    host: str | None,
    model: str | None,
    pull: bool,
    as_json: bool,
    verbose: bool,
    session: str | None = None,
) -> int:
    """`llama-agent run`."""
    printer = Printer(verbose=verbose)

    def body() -> int:
        agent, renderer = _agent(config, host=host, model=model)

        async def go() -> RunResult:
            async with agent:
                await ensure_model(agent, printer, pull=pull)
                return await run_task(
                    agent, task, printer, as_json=as_json, renderer=renderer, session=session
                )

        return exit_code_for_result(anyio.run(go))

    return _guarded(printer, body)


def chat(
    config: Path,
    *,
    host: str | None,
    model: str | None,
    pull: bool,
    verbose: bool,
    session: str | None = None,
) -> int:
    """`llama-agent chat`."""
    printer = Printer(verbose=verbose)

    def body() -> int:
        agent, renderer = _agent(config, host=host, model=model)

        def read_line() -> str:
            return printer.err.input("[bold green]you>[/] ")

        async def go() -> RunResult | None:
            async with agent:
                return await chat_session(
                    agent, printer, read_line, pull=pull, renderer=renderer, session=session
                )

        last = anyio.run(go)
        failed = last is not None and last.status == "error"
        return exit_code_for_result(last) if last is not None and failed else ExitCode.OK

    return _guarded(printer, body)


def prompt(config: Path, task: str, *, model: str | None) -> int:
    """`llama-agent prompt`: the exact text, nothing added."""
    printer = Printer()

    def body() -> int:
        agent, _ = _agent(config, host=None, model=model)
        try:
            printer.write(agent.render(task))
        finally:
            anyio.run(agent.aclose)
        return ExitCode.OK

    return _guarded(printer, body)


def tools(config: Path, *, as_json: bool) -> int:
    """`llama-agent tools`."""
    printer = Printer()

    def body() -> int:
        listed = [
            {
                "name": t.name,
                "builtin": t.builtin,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in build_tools(load_config(config))
        ]
        if as_json:
            printer.write(json.dumps(listed, indent=2, ensure_ascii=False) + "\n")
            return ExitCode.OK
        if not listed:
            printer.note("no tools")
        for item in listed:
            builtin = item["builtin"]
            served = f" [dim](serves Llama's built-in {builtin})[/]" if builtin else ""
            printer.out.print(f"[bold cyan]{escape(str(item['name']))}[/]{served}")
            printer.out.print(escape(str(item["description"])))
            schema = json.dumps(item["parameters"], indent=2)
            printer.out.print(JSON(schema) if printer.out.is_terminal else escape(schema))
            printer.out.print()
        return ExitCode.OK

    return _guarded(printer, body)


def check(config: Path, *, host: str | None, pull: bool) -> int:
    """`llama-agent check`."""
    printer = Printer()
    return _guarded(
        printer, lambda: anyio.run(lambda: run_checks(config, printer, host=host, pull=pull))
    )


# --- helpers -----------------------------------------------------------------------------------


def _agent(path: Path, *, host: str | None, model: str | None) -> tuple[Agent, Renderer]:
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if model is not None:
        overrides["model"] = model
    config = load_config(path)
    agent = build_agent(config, **overrides)
    renderer = prompt_renderer(
        agent, tool_format=config.tool_format, tool_choice=config.tool_choice
    )
    return agent, renderer


def _guarded(printer: Printer, body: Callable[[], int]) -> int:
    with warnings.catch_warnings():
        # Library warnings (an unsandboxed code tool...) as one plain line, not a source dump.
        def show(message: Warning | str, *_args: object, **_kwargs: object) -> None:
            printer.note(f"[yellow]warning:[/] {escape(str(message))}")

        warnings.showwarning = show
        try:
            return body()
        except KeyboardInterrupt:
            printer.error("interrupted")
            return ExitCode.INTERRUPTED
        except BaseExceptionGroup as group:
            leaf = _only_leaf(group)
            if not isinstance(leaf, LlamaAgentError | KeyboardInterrupt):
                raise
            return _fail(printer, leaf)
        except LlamaAgentError as exc:
            return _fail(printer, exc)


def _fail(printer: Printer, exc: BaseException) -> ExitCode:
    if isinstance(exc, KeyboardInterrupt):
        printer.error("interrupted")
    elif isinstance(exc, ConfigError):
        printer.error(str(exc))  # its lines already start with file:line
    else:
        printer.error(f"error: {exc}")
    return exit_code_for_error(exc)


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# --- runs and chats -----------------------------------------------------------------------------


async def ensure_model(agent: Agent, printer: Printer, *, pull: bool) -> ModelInfo | None:
    """With `pull`: make sure the agent's model is on the server, pulling it if it is not."""
    if not pull:
        return None
    try:
        return await agent.backend.model_info(agent.model)
    except ModelNotFoundError:
        await pull_model(_ollama(agent), agent.model, printer)
        return await agent.backend.model_info(agent.model)


def _ollama(agent: Agent) -> OllamaBackend:
    from agent.backends import OllamaBackend

    backend = agent.backend
    if not isinstance(backend, OllamaBackend):  # pragma: no cover - the CLI always uses Ollama
        raise TypeError("--pull needs the Ollama backend")
    return backend


Renderer = Callable[[RunResult], str]


def prompt_renderer(agent: Agent, *, tool_format: ToolFormat | None, tool_choice: str) -> Renderer:
    """Renders the prompt of the request that follows a run's state (for `-v`)."""
    specs = [t.spec for t in agent.tools]

    def render(so_far: RunResult) -> str:
        return render_prompt(
            so_far.messages,
            specs,
            model=agent.model,
            today=so_far.today,
            tool_format=tool_format,
            tool_choice=tool_choice,
        )

    return render


async def run_task(
    agent: Agent,
    task: str,
    printer: Printer,
    *,
    history: RunResult | None = None,
    as_json: bool = False,
    renderer: Renderer | None = None,
    session: str | None = None,
) -> RunResult:
    """Run one task, showing it as it happens (or printing the whole result as JSON).

    With `printer.verbose` and a `renderer`, each request's prompt is shown as it is sent:
    the first in full, then what each step added. `session`: continue that stored
    conversation (its prompts are not shown: they are known once it is loaded).
    """
    shown = ""
    if printer.verbose and renderer is not None and session is None:
        shown = agent.render(task, history=history)
        printer.prompt(shown)
    stream = agent.stream(task, history=history, session=session)
    async with stream:
        async for event in stream:
            if as_json:
                if isinstance(event, RunStarted | StepFinished):
                    printer.wait("thinking…")
                continue
            printer.event(event)
            if renderer is not None and shown and isinstance(event, StepFinished):
                shown = _show_next_prompt(renderer, stream.result, shown, printer)
    result = stream.result
    printer.idle()
    if as_json:
        printer.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    elif result.status == "error":
        printer.error(f"error: {result.error}")
    else:
        printer.outcome(result)
    return result


def _show_next_prompt(render: Renderer, so_far: RunResult, shown: str, printer: Printer) -> str:
    # The next request's prompt starts with the last one (the runtime keeps prefixes stable
    # for Ollama's cache), so only what was added is printed: the completion and tool results.
    if not so_far.messages or so_far.messages[-1].role == "assistant":
        return shown  # the model answered: no further request
    full = render(so_far)
    printer.prompt(full[len(shown) :] if full.startswith(shown) else full)
    return full


async def chat_session(
    agent: Agent,
    printer: Printer,
    read_line: Callable[[], str],
    *,
    pull: bool = False,
    renderer: Renderer | None = None,
    session: str | None = None,
) -> RunResult | None:
    """Talk with the agent until EOF, `/exit` or `/quit`; `/reset` starts over.

    `session`: the conversation is stored under that name, each turn continuing it (across
    restarts); `/reset` then deletes it.
    """
    await ensure_model(agent, printer, pull=pull)
    printer.note("[dim]/reset starts over, /exit (or Ctrl-D) leaves[/]")
    if session is not None:
        stored = await agent.store.load(session)
        count = len(stored.messages) if stored is not None else 0
        printer.note(f"[dim]session {escape(session)}: {count} message(s) so far[/]")
    history: RunResult | None = None
    while True:
        try:
            line = await read_in_daemon_thread(read_line)
        except EOFError:
            printer.end_line()
            return history
        text = line.strip()
        if text in ("/exit", "/quit"):
            return history
        if text == "/reset":
            history = None
            if session is not None:
                await agent.store.delete(session)
            printer.note("[dim]new conversation[/]")
            continue
        if not text:
            continue
        result = await run_task(
            agent,
            text,
            printer,
            history=None if session is not None else history,
            renderer=renderer,
            session=session,
        )
        if result.status == "error":
            return result
        history = result


async def read_in_daemon_thread(read_line: Callable[[], str]) -> str:
    """`read_line()` in a daemon thread; cancelling the wait (Ctrl-C) leaves that thread behind.

    A blocking `input()` cannot be interrupted from another thread, and the interpreter joins
    every non-daemon thread at exit: run in `to_thread.run_sync`, whose workers are not
    daemons, it kept the command alive after Ctrl-C until the user pressed Enter. So the read
    runs in a daemon thread, and an anyio worker waits for it (`abandon_on_cancel=True`, so a
    cancellation returns at once); the worker is released on the way out, whatever happened.
    """
    ready = threading.Event()
    outcome: list[str | BaseException] = []

    def work() -> None:
        try:
            outcome.append(read_line())
        except BaseException as exc:  # EOFError, KeyboardInterrupt...: raised in the caller
            outcome.append(exc)
        finally:
            ready.set()

    threading.Thread(target=work, name="llama-agent input", daemon=True).start()
    try:
        await anyio.to_thread.run_sync(ready.wait, abandon_on_cancel=True)
    finally:
        ready.set()  # an abandoned worker must not wait for a line that may never come
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result
