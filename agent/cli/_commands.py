"""What each command does, once its arguments are parsed: load, run, print, pick the exit code.

Every expected failure (a bad config, Ollama down, a missing model...) becomes one message on
stderr and its exit code; only a bug shows a traceback.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from rich.json import JSON
from rich.markup import escape

from agent.cli._check import run_checks
from agent.cli._exit import ExitCode, exit_code_for_error, exit_code_for_result
from agent.cli._output import Printer
from agent.cli._session import Renderer, ensure_model, prompt_renderer, run_task
from agent.cli._session import chat as chat_session
from agent.config import build_agent, build_tools, load_config
from agent.errors import ConfigError, LlamaAgentError
from agent.loop import Agent, RunResult

__all__ = ["chat", "check", "prompt", "run", "tools"]


def run(
    config: Path,
    task: str,
    *,
    host: str | None,
    model: str | None,
    pull: bool,
    as_json: bool,
    verbose: bool,
) -> int:
    """`llama-agent run`."""
    printer = Printer(verbose=verbose)

    def body() -> int:
        agent, renderer = _agent(config, host=host, model=model)

        async def go() -> RunResult:
            async with agent:
                await ensure_model(agent, printer, pull=pull)
                return await run_task(agent, task, printer, as_json=as_json, renderer=renderer)

        return exit_code_for_result(anyio.run(go))

    return _guarded(printer, body)


def chat(config: Path, *, host: str | None, model: str | None, pull: bool, verbose: bool) -> int:
    """`llama-agent chat`."""
    printer = Printer(verbose=verbose)

    def body() -> int:
        agent, renderer = _agent(config, host=host, model=model)

        def read_line() -> str:
            return printer.err.input("[bold green]you>[/] ")

        async def go() -> RunResult | None:
            async with agent:
                return await chat_session(agent, printer, read_line, pull=pull, renderer=renderer)

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
