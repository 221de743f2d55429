"""The async side of the commands: a run, a chat, a pull. The typer layer only parses options."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from agent.backends import ModelInfo
from agent.cli._output import Printer
from agent.errors import ModelNotFoundError
from agent.llama3 import ToolFormat, render_prompt
from agent.loop import Agent, RunResult, RunStarted, StepFinished

if TYPE_CHECKING:
    from agent.backends import OllamaBackend

__all__ = [
    "Renderer",
    "chat",
    "ensure_model",
    "prompt_renderer",
    "pull_model",
    "read_in_daemon_thread",
    "run_task",
]


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


async def pull_model(backend: OllamaBackend, model: str, printer: Printer) -> None:
    """Pull `model`, with a progress bar on a terminal and status lines otherwise."""
    printer.note(f"pulling {model}…")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    last_status = ""
    with Progress(*columns, console=printer.err, disable=not printer.fancy) as bar:
        task = bar.add_task(model, total=None)
        async for progress in backend.pull(model):
            if progress.total:
                bar.update(
                    task,
                    total=progress.total,
                    completed=progress.completed or 0,
                    description=progress.status,
                )
            elif progress.status != last_status:
                bar.update(task, description=progress.status)
            if not printer.fancy and progress.status != last_status:
                printer.note(progress.status)
            last_status = progress.status
    printer.note(f"{printer.mark('ok')} pulled {model}")


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
) -> RunResult:
    """Run one task, showing it as it happens (or printing the whole result as JSON).

    With `printer.verbose` and a `renderer`, each request's prompt is shown as it is sent:
    the first in full, then what each step added.
    """
    shown = ""
    if printer.verbose and renderer is not None:
        shown = agent.render(task, history=history)
        printer.prompt(shown)
    stream = agent.stream(task, history=history)
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


async def chat(
    agent: Agent,
    printer: Printer,
    read_line: Callable[[], str],
    *,
    pull: bool = False,
    renderer: Renderer | None = None,
) -> RunResult | None:
    """Talk with the agent until EOF, `/exit` or `/quit`; `/reset` starts over."""
    await ensure_model(agent, printer, pull=pull)
    printer.note("[dim]/reset starts over, /exit (or Ctrl-D) leaves[/]")
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
            printer.note("[dim]new conversation[/]")
            continue
        if not text:
            continue
        result = await run_task(agent, text, printer, history=history, renderer=renderer)
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
