"""The `llama-agent` command line: arguments, help and exit codes. What each command does is in
`_session`, imported only when it runs, so `--help` and `schema` start fast (no HTTP client,
no loop, no toolsets)."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import (
    ConfigError,
    DeveloperError,
    ModelNotFoundError,
    OllamaUnreachableError,
    SandboxUnavailableError,
)

if TYPE_CHECKING:
    from agent.loop import RunResult

__all__ = [
    "EXIT_CODES_HELP",
    "ExitCode",
    "app",
    "exit_code_for_error",
    "exit_code_for_result",
    "main",
]


# --- exit codes --------------------------------------------------------------------------------


class ExitCode(IntEnum):
    """`llama-agent`'s exit status."""

    OK = 0
    """The model answered (or the check passed)."""
    ERROR = 1
    """Any other failure: a broken stream, a deadline talking to Ollama, a context overflow."""
    USAGE = 2
    """The command line is wrong (an unknown option, a missing argument)."""
    CONFIG = 3
    """The config is invalid, a custom tool does not import, or the sandbox is unavailable."""
    OLLAMA_UNREACHABLE = 4
    """Nothing answers at the Ollama URL."""
    MODEL_MISSING = 5
    """The model is not pulled on the server (pass --pull)."""
    LIMIT = 6
    """The run stopped at a limit before an answer: steps, retries, repeats, run timeout,
    token budget, or an answer cut off at `num_predict`."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""


EXIT_CODES_HELP = (
    "Exit codes: "
    + ", ".join(
        f"{code.value} {label}"
        for code, label in [
            (ExitCode.OK, "answered"),
            (ExitCode.ERROR, "other error"),
            (ExitCode.USAGE, "bad usage"),
            (ExitCode.CONFIG, "config error"),
            (ExitCode.OLLAMA_UNREACHABLE, "Ollama unreachable"),
            (ExitCode.MODEL_MISSING, "model missing"),
            (ExitCode.LIMIT, "limit reached"),
            (ExitCode.INTERRUPTED, "interrupted"),
        ]
    )
    + "."
)


def exit_code_for_error(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ended the command."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, ConfigError | SandboxUnavailableError | DeveloperError):
        return ExitCode.CONFIG
    if isinstance(exc, OllamaUnreachableError):
        return ExitCode.OLLAMA_UNREACHABLE
    if isinstance(exc, ModelNotFoundError):
        return ExitCode.MODEL_MISSING
    return ExitCode.ERROR


def exit_code_for_result(result: RunResult) -> ExitCode:
    """The exit code for how a run ended."""
    if result.status == "answered":
        return ExitCode.OK
    if result.status == "cancelled":
        return ExitCode.INTERRUPTED
    if result.status == "error":
        return exit_code_for_error(result.exception) if result.exception else ExitCode.ERROR
    return ExitCode.LIMIT


# --- arguments ---------------------------------------------------------------------------------

app = typer.Typer(
    name="llama-agent",
    help="Run Llama 3.x agents that use tools in their native format, served by Ollama.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ConfigArg = Annotated[
    Path,
    typer.Argument(help="The agent's YAML config (see `llama-agent schema`).", show_default=False),
]
TaskArg = Annotated[
    str, typer.Argument(help="What to do; `-` reads it from stdin.", show_default=False)
]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", help="Ollama's URL; overrides the config and OLLAMA_HOST.", show_default=False
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Use this model instead of the config's.", show_default=False
    ),
]
PullOpt = Annotated[bool, typer.Option("--pull", help="Pull the model first if it is missing.")]
SessionOpt = Annotated[
    str | None,
    typer.Option(
        "--session",
        help="Continue the conversation stored under this name (created if new); see "
        "`llama-agent sessions`.",
        show_default=False,
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show the prompts sent to the model.")
]


def main() -> None:
    """Entry point of the `llama-agent` script and of `python -m agent`."""
    app(prog_name="llama-agent")


def _show_version(value: bool) -> None:  # noqa: FBT001 - typer's callback signature
    if value:
        from importlib.metadata import version

        typer.echo(f"llama-agent {version('llama-agent')}")
        raise typer.Exit()


@app.callback()
def _root(
    *,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Run Llama 3.x agents that use tools in their native format, served by Ollama."""


# --- commands ----------------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def run(
    config: ConfigArg,
    task: TaskArg,
    *,
    host: HostOpt = None,
    model: ModelOpt = None,
    pull: PullOpt = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the whole result as JSON at the end, nothing else."),
    ] = False,
    verbose: VerboseOpt = False,
    session: SessionOpt = None,
) -> None:
    """Run TASK with the agent in CONFIG, streaming the answer and the tool calls.

    The answer goes to stdout; tool calls, their results and the spinner to stderr.
    """
    from agent.cli import _session

    text = _task_text(task)
    code = _session.run(
        config,
        text,
        host=host,
        model=model,
        pull=pull,
        as_json=as_json,
        verbose=verbose,
        session=session,
    )
    raise typer.Exit(code)


@app.command(epilog=EXIT_CODES_HELP)
def chat(
    config: ConfigArg,
    *,
    host: HostOpt = None,
    model: ModelOpt = None,
    pull: PullOpt = False,
    verbose: VerboseOpt = False,
    session: SessionOpt = None,
) -> None:
    """Talk with the agent in CONFIG, turn by turn (/reset starts over, /exit or Ctrl-D leaves)."""
    from agent.cli import _session

    code = _session.chat(
        config, host=host, model=model, pull=pull, verbose=verbose, session=session
    )
    raise typer.Exit(code)


@app.command(epilog=EXIT_CODES_HELP)
def prompt(config: ConfigArg, task: TaskArg, *, model: ModelOpt = None) -> None:
    """Print the exact native prompt the first request for TASK would send (no server needed)."""
    from agent.cli import _session

    raise typer.Exit(_session.prompt(config, _task_text(task), model=model))


@app.command(epilog=EXIT_CODES_HELP)
def tools(
    config: ConfigArg,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as a JSON list.")] = False,
) -> None:
    """List the tools of the agent in CONFIG, with the JSON schema the model sees."""
    from agent.cli import _session

    raise typer.Exit(_session.tools(config, as_json=as_json))


@app.command(epilog=EXIT_CODES_HELP)
def check(config: ConfigArg, *, host: HostOpt = None, pull: PullOpt = False) -> None:
    """Check that CONFIG is valid, Ollama answers, the model is there and the sandbox works."""
    from agent.cli import _session

    raise typer.Exit(_session.check(config, host=host, pull=pull))


@app.command()
def schema() -> None:
    """Print the config file's JSON Schema (for editors: see the comment atop config.yaml)."""
    from agent.config import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n")


@app.command(epilog=EXIT_CODES_HELP)
def sessions(
    action: Annotated[
        str, typer.Argument(help="list, show or delete.", show_default=False)
    ] = "list",
    name: Annotated[
        str | None, typer.Argument(help="The session (show, delete).", show_default=False)
    ] = None,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the stored conversations, show one, or delete one (stored in
    $LLAMA_AGENT_HOME/sessions.db, else in the user data folder)."""
    from agent.cli import _serve

    raise typer.Exit(_serve.sessions(action, name, as_json=as_json))


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    config: ConfigArg,
    *,
    listen: Annotated[
        str, typer.Option("--listen", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The TCP port.")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="A key clients must send (Authorization: Bearer KEY); repeatable. Also read "
            "from LLAMA_AGENT_API_KEY (comma-separated). Required to listen beyond loopback.",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds runs get to finish at shutdown.")
    ] = 10.0,
    host: HostOpt = None,
    model: ModelOpt = None,
) -> None:
    """Serve the agent in CONFIG over HTTP: OpenAI's /v1/chat/completions and /v1/models, and
    the agent's events as server-sent events (/v1/agent/events)."""
    from agent.cli import _serve

    code = _serve.serve(
        config,
        listen=listen,
        port=port,
        api_keys=api_key or [],
        grace=grace,
        host=host,
        model=model,
    )
    raise typer.Exit(code)


def _task_text(task: str) -> str:
    text = sys.stdin.read() if task == "-" else task
    if not text.strip():
        raise typer.BadParameter("the task is empty", param_hint="TASK")
    return text
