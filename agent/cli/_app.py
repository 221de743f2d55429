"""The `llama-agent` command line: arguments, help and exit codes. What each command does is in
`_session`, imported only when it runs, so `--help` and `schema` start fast (no HTTP client,
no loop, no toolsets)."""

from __future__ import annotations

import json
import os
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.core

from agent.errors import (
    BackendUnreachableError,
    ConfigError,
    DeveloperError,
    ModelNotFoundError,
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
    "failure_json",
    "main",
]


# --- exit codes --------------------------------------------------------------------------------


class ExitCode(IntEnum):
    """`llama-agent`'s exit status."""

    OK = 0
    """The model answered (or the check passed)."""
    ERROR = 1
    """Any other failure: a broken stream, a deadline talking to Ollama, a context overflow
    (the conversation and the reserve for the answer, `num_predict`, exceed `num_ctx`)."""
    USAGE = 2
    """The command line is wrong (an unknown option, a missing argument), or so is the host in
    `--host` or `OLLAMA_HOST`."""
    CONFIG = 3
    """The config is invalid (`ollama.host` included), a custom tool does not import, the
    sandbox is unavailable, or (`check`) `num_ctx` is over the model's context length."""
    OLLAMA_UNREACHABLE = 4
    """Nothing answers at the model server's URL (Ollama's, or every host of a pool)."""
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
    if isinstance(exc, BackendUnreachableError):
        return ExitCode.OLLAMA_UNREACHABLE
    if isinstance(exc, ModelNotFoundError):
        return ExitCode.MODEL_MISSING
    return ExitCode.ERROR


def failure_json(code: int, message: str, exception: str | None = None) -> str:
    """The JSON object `--json` prints when a command fails before a run's result exists.

    `type` is stable (the exit code's name: `usage`, `config`, `ollama_unreachable`...), so a
    script branches on it, or on `exit_code`, and never parses stderr.
    """
    kind = ExitCode(code).name.lower() if code in ExitCode._value2member_map_ else "error"
    failure = {
        "status": "error",
        "exit_code": int(code),
        "type": kind,
        "error": message,
        "error_type": exception,
    }
    return json.dumps(failure, ensure_ascii=False) + "\n"


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


def _flags_without_metavar(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""  # typer shows `<bool>` after a flag that takes no value
    return params


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_metavar(super().get_params(ctx))


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_metavar(super().get_params(ctx))


app = typer.Typer(
    name="llama-agent",
    help="Run Llama 3.x agents that use tools in their native format, served by Ollama.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=_Group,
)

ConfigTaskArgs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[CONFIG] TASK",
        help="An optional YAML config (the first of two arguments, or a lone one ending in .yaml "
        "or .yml), then what to do; `-` reads the task from stdin. Without a config: the "
        "default agent.",
        show_default=False,
    ),
]
ConfigArg = Annotated[
    Path | None,
    typer.Argument(
        help="The agent's YAML config (see `llama-agent schema`); none: the default agent.",
        show_default=False,
    ),
]
HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="The model server's URL (host, host:port, :port, http(s)://host:port); overrides "
        "the config and OLLAMA_HOST. Give it several times for a pool of hosts of one engine.",
        show_default=False,
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="The model server: ollama, vllm, sglang or llamacpp (llama-server); overrides the "
        "config's engine.",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Use this model instead of the config's.", show_default=False
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option(
        "--system", "-s", help="Use this system prompt instead of the config's.", show_default=False
    ),
]
MaxStepsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-steps",
        min=1,
        help="Model requests per run (the config's limits.max_steps).",
        show_default=False,
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
ApproveOpt = Annotated[
    bool,
    typer.Option(
        "--approve",
        help="Approve every call of tools that need approval, unasked (without it, a terminal "
        "asks; with no terminal, such calls are refused).",
    ),
]


def main() -> None:
    """Entry point of the `llama-agent` script and of `python -m agent`.

    With `--json`, a usage error (an unknown option, a missing argument) is a JSON object on
    stdout too, like every other failure.
    """
    if "--json" not in sys.argv[1:]:
        app(prog_name="llama-agent")
        return
    try:
        code = app(prog_name="llama-agent", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors
        status = int(getattr(exc, "exit_code", ExitCode.USAGE))
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        sys.stdout.write(failure_json(status, message, "UsageError"))
        sys.exit(status)
    except typer.Abort:
        sys.stdout.write(failure_json(ExitCode.INTERRUPTED, "interrupted", "KeyboardInterrupt"))
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


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
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Run Llama 3.x agents that use tools in their native format, served by Ollama."""


# --- commands ----------------------------------------------------------------------------------


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def run(
    args: ConfigTaskArgs = None,
    *,
    host: HostOpt = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    max_steps: MaxStepsOpt = None,
    pull: PullOpt = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the whole result as JSON at the end, nothing else; a failure is a "
            "JSON object too (exit_code, type, error).",
        ),
    ] = False,
    verbose: VerboseOpt = False,
    session: SessionOpt = None,
    approve: ApproveOpt = False,
) -> None:
    """Run TASK with the agent in CONFIG (or the default agent), streaming the answer and the
    tool calls. Text piped in is added to the task: `cat notes.txt | llama-agent run "sum up"`.

    The answer goes to stdout; tool calls, their results and the spinner to stderr.
    """
    _check_hosts(host, engine, as_json=as_json)
    config, text = _config_and_task(args, as_json=as_json)
    from agent.cli import _session

    code = _session.run(
        config,
        text,
        overrides=_session.Overrides(
            model=model, system=system, max_steps=max_steps, engine=engine, hosts=host or []
        ),
        pull=pull,
        as_json=as_json,
        verbose=verbose,
        session=session,
        approve=approve,
    )
    raise typer.Exit(code)


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def chat(
    config: ConfigArg = None,
    *,
    host: HostOpt = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    max_steps: MaxStepsOpt = None,
    pull: PullOpt = False,
    verbose: VerboseOpt = False,
    session: SessionOpt = None,
    approve: ApproveOpt = False,
) -> None:
    """Talk with the agent in CONFIG (or the default agent), turn by turn.

    Line editing and history on a terminal; \"\"\" starts and ends a multi-line message; Ctrl-C
    stops a reply; /help lists the commands; /bye or Ctrl-D leaves.
    """
    _check_hosts(host, engine, as_json=False)
    from agent.cli import _session

    overrides = _session.Overrides(
        model=model, system=system, max_steps=max_steps, engine=engine, hosts=host or []
    )
    raise typer.Exit(
        _session.chat(
            config,
            overrides=overrides,
            pull=pull,
            verbose=verbose,
            session=session,
            approve=approve,
        )
    )


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def prompt(
    args: ConfigTaskArgs = None, *, model: ModelOpt = None, system: SystemOpt = None
) -> None:
    """Print the exact native prompt the first request for TASK would send (no server needed)."""
    _check_hosts(None, None, as_json=False)
    config, text = _config_and_task(args, as_json=False)
    from agent.cli import _session

    overrides = _session.Overrides(model=model, system=system)
    raise typer.Exit(_session.prompt(config, text, overrides=overrides))


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def tools(
    config: ConfigArg = None,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as a JSON list.")] = False,
) -> None:
    """List the tools of the agent in CONFIG (or the default agent), with their JSON schemas."""
    _check_hosts(None, None, as_json=as_json)
    from agent.cli import _session

    raise typer.Exit(_session.tools(config, as_json=as_json))


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def check(
    config: ConfigArg = None,
    *,
    host: HostOpt = None,
    engine: EngineOpt = None,
    pull: PullOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings and each host as JSON.")
    ] = False,
) -> None:
    """Check that CONFIG (or the default agent) is valid, every host of the model server
    answers (its version), has the model and its context size, num_ctx fits, the sandbox works
    and web search is reachable."""
    _check_hosts(host, engine, as_json=as_json)
    from agent.cli import _session

    overrides = _session.Overrides(engine=engine, hosts=host or [])
    raise typer.Exit(_session.check(config, overrides=overrides, pull=pull, as_json=as_json))


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def mcp(
    config: ConfigArg = None,
    *,
    http: Annotated[
        int | None,
        typer.Option(
            "--http",
            metavar="PORT",
            help="Serve over Streamable HTTP on this port (at /mcp) instead of stdio.",
            show_default=False,
        ),
    ] = None,
    bind: Annotated[str, typer.Option("--bind", help="The address --http listens on.")] = (
        "127.0.0.1"
    ),
    host: HostOpt = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
) -> None:
    """Serve the agent in CONFIG (or the default agent) as an MCP tool (the config's `name` and
    `description`; input: the task), over stdio, or over Streamable HTTP with --http PORT.
    Needs the mcp extra."""
    _check_hosts(host, engine, as_json=False)
    from agent.cli import _session

    overrides = _session.Overrides(model=model, engine=engine, hosts=host or [])
    raise typer.Exit(_session.mcp(config, http=http, bind=bind, overrides=overrides))


@app.command(cls=_Command)
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
    from agent.cli import _session as _serve

    raise typer.Exit(_serve.sessions(action, name, as_json=as_json))


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    config: ConfigArg = None,
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
    engine: EngineOpt = None,
    model: ModelOpt = None,
) -> None:
    """Serve the agent in CONFIG over HTTP: OpenAI's /v1/chat/completions and /v1/models, and
    the agent's events as server-sent events (/v1/agent/events)."""
    _check_hosts(host, engine, as_json=False)
    from agent.cli import _session as _serve

    code = _serve.serve(
        config,
        listen=listen,
        port=port,
        api_keys=api_key or [],
        grace=grace,
        overrides=_serve.Overrides(model=model, engine=engine, hosts=host or []),
    )
    raise typer.Exit(code)


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def batch(
    config: Annotated[Path, typer.Argument(help="The agent's YAML config.", show_default=False)],
    tasks: Annotated[
        Path,
        typer.Argument(
            metavar="TASKS",
            help='JSON Lines: {"id": ..., "task": ...} per line, with optional "expected" and '
            '"metadata".',
            show_default=False,
        ),
    ],
    *,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where each run's record is appended (JSON Lines); a rerun skips the ids in it.",
            show_default=False,
        ),
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs at once (in all).")
    ] = 64,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Run only part I of N (0-based), split by a hash of the id: one per machine.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run shards as Ray tasks (the ray extra), on the cluster at --ray-address, "
            "else RAY_ADDRESS, else a local Ray started for the batch.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster for --ray (ray://host:10001, auto); implies --ray.",
            show_default=False,
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="MODULE:FUNCTION",
            help="Check each run with this function of (task line, result) -> bool or "
            "(bool, reason), sync or async, instead of the expected-answer rule.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the summary as one JSON object, nothing else."),
    ] = False,
    host: HostOpt = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
    max_steps: MaxStepsOpt = None,
    pull: PullOpt = False,
    keep_errors: Annotated[
        bool,
        typer.Option(
            "--keep-errors",
            help="On a rerun, count runs that ended in error as done (by default they run again).",
        ),
    ] = False,
) -> None:
    """Run the agent in CONFIG over every task in TASKS, many at once, appending each run's
    record to -o as it finishes. Rerunning the same command resumes: ids already done are
    skipped, runs that ended in error are tried again. Exit code 1 when a run ended in error
    or the judge broke (a limit such as max_steps is a result, not a failure)."""
    _check_hosts(host, engine, as_json=as_json)
    if shard is not None:
        index, slash, count = shard.partition("/")
        if not (slash and index.isdigit() and count.isdigit() and int(index) < int(count)):
            _usage_error(
                f"--shard {shard!r} is not I/N with 0 <= I < N (0-based), as in --shard 0/4",
                as_json=as_json,
            )
    from agent.cli import _batch
    from agent.cli._session import Overrides

    options = _batch.BatchOptions(
        config=config,
        tasks=tasks,
        output=output,
        concurrency=concurrency,
        shard=shard,
        ray=ray_address if ray_address is not None else ("" if ray else None),
        judge=judge,
        as_json=as_json,
        overrides=Overrides(model=model, max_steps=max_steps, engine=engine, hosts=host or ()),
        pull=pull,
        retry_errors=not keep_errors,
    )
    raise typer.Exit(_batch.batch(options))


@app.command(cls=_Command, epilog=EXIT_CODES_HELP)
def export(
    runs: Annotated[
        Path,
        typer.Argument(metavar="RUNS", help="A batch's output (runs.jsonl).", show_default=False),
    ],
    *,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="PATH", help="The dataset to write (JSON lines)."),
    ],
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="native|messages",
            help="native: the exact Llama text and the spans the model wrote; messages: Hugging "
            "Face chat messages with tools (TRL's SFTTrainer).",
        ),
    ] = "native",
    only_passed: Annotated[
        bool, typer.Option("--only-passed", help="Only runs whose check passed.")
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps",
            min=1,
            metavar="N",
            help="Only runs of at most N steps.",
            show_default=False,
        ),
    ] = None,
    dedupe: Annotated[
        bool,
        typer.Option("--dedupe", help="One run per task (the best: passed, then fewest steps)."),
    ] = False,
    tokenize: Annotated[
        bool,
        typer.Option(
            "--tokenize",
            help="Add input_ids and labels (native format; needs the tokenizer extra).",
        ),
    ] = False,
    card: Annotated[
        Path | None,
        typer.Option(
            "--card",
            metavar="PATH",
            help="Where to write the dataset card (default: beside the output, NAME.card.md).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export the answered runs of a batch as fine-tuning data, each checked to replay exactly,
    and write its dataset card."""
    if export_format not in ("native", "messages"):
        _usage_error(f"--format {export_format!r}: use native or messages", as_json=as_json)
    if tokenize and export_format != "native":
        _usage_error(
            "--tokenize works with --format native only; drop one of them", as_json=as_json
        )
    from agent.cli import _export

    code = _export.export(
        runs,
        output,
        format="native" if export_format == "native" else "messages",
        only_passed=only_passed,
        max_steps=max_steps,
        dedupe=dedupe,
        tokenize=tokenize,
        card=card,
        as_json=as_json,
    )
    raise typer.Exit(code)


# --- checks on the arguments --------------------------------------------------------------------


def _usage_error(message: str, *, as_json: bool, exception: str = "UsageError") -> NoReturn:
    if as_json:
        sys.stdout.write(failure_json(ExitCode.USAGE, message, exception))
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(ExitCode.USAGE)


def _check_hosts(hosts: list[str] | None, engine: str | None, *, as_json: bool) -> None:
    """A malformed `--host` or `OLLAMA_HOST`, an unknown `--engine`, a host given twice: one
    line and a usage exit, before anything imports `ollama` (whose import alone reads
    OLLAMA_HOST and raises on a bad port)."""
    from agent.backends import ENGINES, parse_host

    if engine is not None and engine not in ENGINES:
        _usage_error(
            f"--engine: unknown engine '{engine}'; write one of {', '.join(ENGINES)}",
            as_json=as_json,
        )
    hosts = hosts or []
    if len(set(hosts)) != len(hosts):
        _usage_error(f"--host: a host is given twice ({', '.join(hosts)})", as_json=as_json)
    given = [("--host", host) for host in hosts]
    for where, value in (*given, ("OLLAMA_HOST", os.environ.get("OLLAMA_HOST"))):
        if value:
            try:
                parse_host(value)
            except ValueError as exc:
                _usage_error(f"{where}: {exc}", as_json=as_json, exception="ValueError")


def _is_config(arg: str) -> bool:
    # Whether or not it exists: a mistyped config name is a "no such file", not a task.
    return arg.endswith((".yaml", ".yml")) and "\n" not in arg


def _config_and_task(args: list[str] | None, *, as_json: bool) -> tuple[Path | None, str]:
    """`[CONFIG] TASK` → (config or None, task with any piped text added).

    Two arguments are a config and a task. One is the task, unless it ends in .yaml or .yml:
    then it is the config and the task comes from stdin.
    """
    args = args or []
    if len(args) > 2:
        _usage_error(f"expected [CONFIG] TASK, got {len(args)} arguments", as_json=as_json)
    config: Path | None = None
    if len(args) == 2 or (len(args) == 1 and _is_config(args[0])):
        config, args = Path(args[0]), args[1:]
    task = args[0] if args else None
    if task == "-" or (task is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
    else:
        text = task or ""
        piped = "" if sys.stdin.isatty() else sys.stdin.read()
        if piped.strip():
            text = f"{text}\n\n{piped}"
    if not text.strip():
        _usage_error("the task is empty" if args else "missing TASK", as_json=as_json)
    return config, text
