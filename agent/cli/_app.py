"""The `llama-agent` command line: arguments and help. Each command's body is in `_commands`,
imported only when it runs, so `--help` and `schema` start fast (no HTTP client, no loop)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli._exit import EXIT_CODES_HELP

__all__ = ["app", "main"]

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
) -> None:
    """Run TASK with the agent in CONFIG, streaming the answer and the tool calls.

    The answer goes to stdout; tool calls, their results and the spinner to stderr.
    """
    from agent.cli import _commands

    text = _task_text(task)
    code = _commands.run(
        config, text, host=host, model=model, pull=pull, as_json=as_json, verbose=verbose
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
) -> None:
    """Talk with the agent in CONFIG, turn by turn (/reset starts over, /exit or Ctrl-D leaves)."""
    from agent.cli import _commands

    raise typer.Exit(_commands.chat(config, host=host, model=model, pull=pull, verbose=verbose))


@app.command(epilog=EXIT_CODES_HELP)
def prompt(config: ConfigArg, task: TaskArg, *, model: ModelOpt = None) -> None:
    """Print the exact native prompt the first request for TASK would send (no server needed)."""
    from agent.cli import _commands

    raise typer.Exit(_commands.prompt(config, _task_text(task), model=model))


@app.command(epilog=EXIT_CODES_HELP)
def tools(
    config: ConfigArg,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as a JSON list.")] = False,
) -> None:
    """List the tools of the agent in CONFIG, with the JSON schema the model sees."""
    from agent.cli import _commands

    raise typer.Exit(_commands.tools(config, as_json=as_json))


@app.command(epilog=EXIT_CODES_HELP)
def check(config: ConfigArg, *, host: HostOpt = None, pull: PullOpt = False) -> None:
    """Check that CONFIG is valid, Ollama answers, the model is there and the sandbox works."""
    from agent.cli import _commands

    raise typer.Exit(_commands.check(config, host=host, pull=pull))


@app.command()
def schema() -> None:
    """Print the config file's JSON Schema (for editors: see the comment atop config.yaml)."""
    from agent.config import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n")


def _task_text(task: str) -> str:
    text = sys.stdin.read() if task == "-" else task
    if not text.strip():
        raise typer.BadParameter("the task is empty", param_hint="TASK")
    return text
