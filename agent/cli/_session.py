"""What each command does once its arguments are parsed: load the config (the packaged default
when none is given), build the agent, run it, print, and pick the exit code. The chat's loop is
in `_chat`.

Every expected failure (a bad config, Ollama down, a missing model...) becomes one message on
stderr (under `--json`, a JSON object on stdout) and its exit code; only a bug shows a traceback.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from rich.json import JSON
from rich.markup import escape

from agent.backends import ModelInfo
from agent.cli._app import ExitCode, exit_code_for_error, exit_code_for_result, failure_json
from agent.cli._check import run_checks
from agent.cli._output import Printer, pull_model, show_tool_tracebacks
from agent.config import AgentConfig, build_agent, build_tools, load_config, with_hosts
from agent.errors import (
    BackendUnreachableError,
    ConfigError,
    LlamaAgentError,
    ModelNotFoundError,
)
from agent.llama3 import Message, ToolFormat, render_prompt
from agent.loop import (
    Agent,
    ApprovalRequested,
    RunResult,
    RunStarted,
    SQLiteStore,
    StepFinished,
    message_to_dict,
)
from agent.toolkit import (
    LiveToolbox,
    Tool,
    Toolbox,
    ToolSource,
    mcp_available,
    split_sources,
)

if TYPE_CHECKING:
    from agent.cli._chat import Approvals

__all__ = [
    "DEFAULT_CONFIG",
    "Overrides",
    "Renderer",
    "chat",
    "check",
    "config_path",
    "ensure_model",
    "mcp",
    "prompt",
    "prompt_renderer",
    "run",
    "run_task",
    "serve",
    "sessions",
    "tools",
]

DEFAULT_CONFIG = "default_config.yaml"
"""The default agent, packaged in `agent.cli`: the repository's `config.yaml`, byte for byte."""


def config_path(path: Path | None) -> Path:
    """The config to load: `path`, or the packaged default agent's."""
    if path is not None:
        return path
    return Path(str(importlib.resources.files("agent.cli") / DEFAULT_CONFIG))


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """What the command line changes in the config: `-m`, `-s`, `--max-steps`, `--engine`,
    `--host` (several: a pool)."""

    model: str | None = None
    system: str | None = None
    max_steps: int | None = None
    engine: str | None = None
    hosts: Sequence[str] = ()

    def apply(self, config: AgentConfig) -> AgentConfig:
        """`config` with these settings in place of its own."""
        config = with_hosts(config, self.hosts, engine=self.engine)
        update: dict[str, Any] = {}
        if self.model is not None:
            update["model"] = self.model
        if self.system is not None:
            update["system"] = self.system
        if self.max_steps is not None:
            update["limits"] = config.limits.model_copy(update={"max_steps": self.max_steps})
        return config.model_copy(update=update) if update else config


# --- the commands ------------------------------------------------------------------------------


def run(
    config: Path | None,
    task: str,
    *,
    overrides: Overrides,
    pull: bool,
    as_json: bool,
    verbose: bool,
    session: str | None = None,
    approve: bool = False,
) -> int:
    """`llama-agent run`."""
    printer = Printer(verbose=verbose)
    if verbose:
        show_tool_tracebacks()
    from agent.cli._chat import Approvals  # _chat imports this module

    approvals = Approvals(printer, approve_all=approve)

    def body() -> int:
        agent, renderer = _agent(config, overrides=overrides)

        async def go() -> RunResult:
            async with agent:
                await ensure_model(agent, printer, pull=pull)
                return await run_task(
                    agent,
                    task,
                    printer,
                    as_json=as_json,
                    renderer=renderer,
                    session=session,
                    approvals=approvals,
                )

        return exit_code_for_result(anyio.run(go))

    return _guarded(printer, body, as_json=as_json)


def chat(
    config: Path | None,
    *,
    overrides: Overrides,
    pull: bool,
    verbose: bool,
    session: str | None = None,
    approve: bool = False,
) -> int:
    """`llama-agent chat`."""
    from agent.cli._chat import chat_session, line_reader

    printer = Printer(verbose=verbose)
    if verbose:
        show_tool_tracebacks()

    def body() -> int:
        agent, renderer = _agent(config, overrides=overrides)
        read = line_reader(printer)
        from agent.cli._chat import Approvals

        approvals = Approvals(printer, approve_all=approve, read_line=read)

        async def go() -> RunResult | None:
            async with agent:
                await ensure_model(agent, printer, pull=pull)
                return await chat_session(
                    agent, printer, read, renderer=renderer, session=session, approvals=approvals
                )

        last = anyio.run(go)
        failed = last is not None and last.status == "error"
        return exit_code_for_result(last) if last is not None and failed else ExitCode.OK

    return _guarded(printer, body)


def prompt(config: Path | None, task: str, *, overrides: Overrides) -> int:
    """`llama-agent prompt`: the exact text, nothing added."""
    printer = Printer()

    def body() -> int:
        agent, _ = _agent(config, overrides=overrides)
        try:
            printer.write(agent.render(task))
        finally:
            anyio.run(agent.aclose)
        return ExitCode.OK

    return _guarded(printer, body)


async def _with_mcp_tools(items: Sequence[Tool | ToolSource]) -> tuple[Tool, ...]:
    """The tools, those of MCP servers included: each server started, listed and stopped
    (`MCPServerError`, with the server's last stderr lines, for one that does not start)."""
    given, sources = split_sources(items)
    live = LiveToolbox(Toolbox(given).tools, sources)
    try:
        return (await live.open()).tools
    finally:
        await live.aclose()


def tools(config: Path | None, *, as_json: bool) -> int:
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
            for t in anyio.run(_with_mcp_tools, build_tools(load_config(config_path(config))))
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
            printer.out.print(JSON(schema) if printer.fancy else escape(schema))
            printer.out.print()
        return ExitCode.OK

    return _guarded(printer, body, as_json=as_json)


def check(config: Path | None, *, overrides: Overrides, pull: bool, as_json: bool = False) -> int:
    """`llama-agent check`."""
    printer = Printer()
    path = config_path(config)
    return _guarded(
        printer,
        lambda: anyio.run(
            lambda: run_checks(path, printer, apply=overrides.apply, pull=pull, as_json=as_json)
        ),
        as_json=as_json,
    )


def mcp(config: Path | None, *, http: int | None, bind: str, overrides: Overrides) -> int:
    """`llama-agent mcp`: the agent as an MCP tool until interrupted (stdout is the protocol's
    over stdio: everything else goes to stderr)."""
    printer = Printer()

    def body() -> int:
        if not mcp_available():
            raise ConfigError("llama-agent mcp needs the mcp extra: pip install 'llama-agent[mcp]'")
        from agent.server import serve_mcp

        path = config_path(config)
        spec = load_config(path)
        agent, _ = _agent(config, overrides=overrides)
        name = spec.name or re.sub(r"[^A-Za-z0-9_-]", "_", path.stem) or "agent"
        where = f"http://{bind}:{http}/mcp" if http is not None else "stdio"
        printer.note(f"serving the agent as the MCP tool '{name}' on {where}")
        anyio.run(
            lambda: serve_mcp(
                agent, name=name, description=spec.description, http_port=http, http_host=bind
            )
        )
        return ExitCode.OK

    return _guarded(printer, body)


# --- helpers -----------------------------------------------------------------------------------


def _agent(path: Path | None, *, overrides: Overrides) -> tuple[Agent, Renderer]:
    config = overrides.apply(load_config(config_path(path)))
    agent = build_agent(config)
    renderer = prompt_renderer(
        agent, tool_format=config.tool_format, tool_choice=config.tool_choice
    )
    return agent, renderer


def _guarded(printer: Printer, body: Callable[[], int], *, as_json: bool = False) -> int:
    with warnings.catch_warnings():
        # Library warnings (an unsandboxed code tool...) as one plain line, not a source dump.
        def show(message: Warning | str, *_args: object, **_kwargs: object) -> None:
            printer.note(f"[yellow]warning:[/] {escape(str(message))}")

        warnings.showwarning = show
        try:
            return body()
        except KeyboardInterrupt as exc:
            return _fail(printer, exc, as_json=as_json)
        except BaseExceptionGroup as group:
            leaf = _only_leaf(group)
            if not isinstance(leaf, LlamaAgentError | KeyboardInterrupt):
                raise
            return _fail(printer, leaf, as_json=as_json)
        except LlamaAgentError as exc:
            return _fail(printer, exc, as_json=as_json)


def _fail(printer: Printer, exc: BaseException, *, as_json: bool) -> ExitCode:
    code = exit_code_for_error(exc)
    message = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
    if as_json:
        printer.idle()
        printer.write(failure_json(code, message, type(exc).__name__))
    elif isinstance(exc, KeyboardInterrupt | ConfigError):
        printer.error(message)  # a ConfigError's lines already start with file:line
    else:
        printer.error(f"error: {message}")
    return code


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# --- runs and chats -----------------------------------------------------------------------------


async def ensure_model(agent: Agent, printer: Printer, *, pull: bool) -> ModelInfo | None:
    """With `pull`: make sure the agent's model is on the server (on every host of a pool that
    answers), pulling it where it is not. Only Ollama pulls: another engine serves the model it
    was started with, and its missing-model error says how to serve it."""
    if not pull:
        return None
    from agent.backends import OllamaBackend, PoolBackend

    backend = agent.backend
    pool = isinstance(backend, PoolBackend)
    hosts = backend.backends if isinstance(backend, PoolBackend) else (backend,)
    info: ModelInfo | None = None
    down: BackendUnreachableError | None = None
    for host in hosts:
        try:
            info = await host.model_info(agent.model)
        except ModelNotFoundError:
            if not isinstance(host, OllamaBackend):
                raise
            await pull_model(host, agent.model, printer)
            info = await host.model_info(agent.model)
        except BackendUnreachableError as exc:
            if not pool:
                raise
            down = exc  # the pool routes around it; `check` reports it
    if info is None and down is not None:
        raise down
    return info


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
    approvals: Approvals | None = None,
) -> RunResult:
    """Run one task, showing it as it happens (or printing the whole result as JSON).

    With `printer.verbose` and a `renderer`, each request's prompt is shown as it is sent:
    the first in full, then what each step added. `session`: continue that stored
    conversation (its prompts are not shown: they are known once it is loaded). Calls that
    need approval are decided by `approvals` (default: refused, as with no terminal).
    """
    if approvals is None:
        from agent.cli._chat import Approvals

        approvals = Approvals(printer, approve_all=False, interactive=False)
    shown = ""
    if printer.verbose and renderer is not None and session is None:
        shown = agent.render(task, history=history)
        printer.prompt(shown)
    stream = agent.stream(task, history=history, session=session)
    async with stream:
        async for event in stream:
            if isinstance(event, ApprovalRequested):
                await approvals.decide(event)
                continue
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
        payload = result.to_dict()
        code = exit_code_for_result(result)
        # The exit code and its stable name, as in a failure's JSON (`failure_json`).
        payload["exit_code"] = int(code)
        payload["type"] = "ok" if code == ExitCode.OK else code.name.lower()
        printer.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
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


def serve(
    config: Path | None,
    *,
    listen: str,
    port: int,
    api_keys: list[str],
    grace: float,
    overrides: Overrides,
) -> int:
    """`llama-agent serve`: until Ctrl-C or SIGTERM, then runs in flight get `grace` seconds."""
    printer = Printer()

    def body() -> int:
        try:
            from agent.server import API_KEY_VARIABLE, AgentServer, is_loopback
            from agent.server import serve as run_server
        except ModuleNotFoundError as exc:
            printer.error(
                f"error: serving needs the server extra ({exc.name} is missing): "
                "pip install 'llama-agent[server]'"
            )
            return ExitCode.CONFIG
        keys = [*api_keys, *os.environ.get(API_KEY_VARIABLE, "").split(",")]
        keys = [k.strip() for k in keys if k.strip()]
        if not keys and not is_loopback(listen):
            printer.error(
                f"error: refusing to listen on {listen} without an API key: pass --api-key or "
                f"set {API_KEY_VARIABLE}, or listen on 127.0.0.1"
            )
            return ExitCode.USAGE
        agent, _ = _agent(config, overrides=overrides)
        server = AgentServer(agent, api_keys=keys, grace=grace)

        async def go() -> None:
            async with agent:
                printer.note(
                    f"serving {escape(agent.model)} on http://{escape(listen)}:{port}/v1 "
                    f"({'API key required' if keys else 'loopback only, no API key'})"
                )
                await run_server(server, host=listen, port=port)

        anyio.run(go)
        return ExitCode.OK

    return _guarded(printer, body)


def sessions(action: str, name: str | None, *, as_json: bool) -> int:
    """`llama-agent sessions [list | show NAME | delete NAME]`."""
    printer = Printer()
    if action not in ("list", "show", "delete"):
        printer.error(f"error: unknown action '{action}': use list, show NAME or delete NAME")
        return ExitCode.USAGE
    if action != "list" and not name:
        printer.error(f"error: `sessions {action}` needs the session's name")
        return ExitCode.USAGE

    async def go() -> int:
        store = SQLiteStore()
        try:
            if action == "list":
                listed = await store.sessions()
                if as_json:
                    rows = [
                        {
                            "name": s.name,
                            "created": s.created.isoformat(),
                            "updated": s.updated.isoformat(),
                            "messages": s.messages,
                            "steps": s.steps,
                            "tokens": s.tokens,
                        }
                        for s in listed
                    ]
                    printer.write(json.dumps(rows, indent=2) + "\n")
                elif not listed:
                    printer.note(f"no sessions in {store.path}")
                for s in listed if not as_json else ():
                    when = s.updated.astimezone().strftime("%Y-%m-%d %H:%M")
                    printer.write(f"{s.name}\t{when}\t{s.messages} messages\t{s.tokens} tokens\n")
                return ExitCode.OK
            assert name is not None
            if action == "delete":
                if await store.delete(name):
                    printer.note(f"deleted session {escape(name)}")
                    return ExitCode.OK
                printer.error(f"error: no session named '{escape(name)}'")
                return ExitCode.ERROR
            session = await store.load(name)
            if session is None:
                printer.error(f"error: no session named '{escape(name)}'")
                return ExitCode.ERROR
            if as_json:
                data = {
                    "name": name,
                    "today": session.info.today.isoformat() if session.info.today else None,
                    "usage": session.usage.to_dict(),
                    "messages": [message_to_dict(m) for m in session.messages],
                }
                printer.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            else:
                for message in session.messages:
                    printer.write(_line(message))
            return ExitCode.OK
        finally:
            await store.aclose()

    return _guarded(printer, lambda: anyio.run(go))


def _line(message: Message) -> str:
    text = message.content
    if message.tool_calls:
        calls = ", ".join(f"{c.name}({json.dumps(dict(c.arguments))})" for c in message.tool_calls)
        text = f"{text} [calls {calls}]".strip()
    return f"{message.role}: {text}\n"
