"""`python -m agent.testing serve`: run an `OllamaEmulator` (or, with `--engine`, the emulator
of vLLM, SGLang or llama.cpp's `llama-server`) as a process.

(`python -m agent.testing llama-server build` builds the real `llama-server` the tests run
into a cache outside the repository; `... llama-server path` prints the one they would use.)

Prints `listening on http://127.0.0.1:PORT` on the first line of stdout, then serves until it
is terminated. The script is `--reply TEXT` (always that answer), `--echo`, or
`--script module:attribute` (a script object, or a function with no arguments returning one).
It keeps the newest `--max-records` requests (1000), so a long run does not grow without bound.

A mistake in the command (a bad `--port`, a `--script` that does not load) is one line on
stderr and exit code 2; a port that cannot be bound, or a missing `testing` extra, exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from agent.testing import Script

USAGE_ERROR = 2


class _UsageError(Exception):
    """A command-line value that cannot work: reported as one line, exit code 2."""


def _load_script(args: argparse.Namespace) -> Script:
    from agent.testing import answer, echo

    if args.script:
        return _import_script(args.script)
    if args.reply is not None:
        return answer(args.reply)
    return echo()


def _import_script(spec: str) -> Script:
    module_name, colon, attribute = spec.partition(":")
    if not (module_name and colon and attribute):
        raise _UsageError(
            f"--script {spec!r} is not module:attribute (for instance my_tests.scripts:weather)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise _UsageError(
                f"--script {spec}: no module named {exc.name!r} (run from the folder that holds "
                "it, or add that folder to PYTHONPATH)"
            ) from exc
        raise _UsageError(f"--script {spec}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the user's module is broken: say how, in one line
        raise _UsageError(
            f"--script {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target = getattr(module, attribute, None)
    if target is None:
        raise _UsageError(f"--script {spec}: module {module_name} has no attribute {attribute!r}")
    if getattr(target, "__code__", None) is not None and target.__code__.co_argcount == 0:
        try:
            target = target()  # a factory of the script
        except Exception as exc:
            raise _UsageError(
                f"--script {spec}: calling {attribute}() failed: {type(exc).__name__}: {exc}"
            ) from exc
    if not callable(target):
        raise _UsageError(
            f"--script {spec}: {attribute} is a {type(target).__name__}, not a script (a "
            "function of a ScriptRequest, or one with no arguments that returns such a function)"
        )
    script: Script = target
    return script


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run an Ollama emulator until interrupted")
    serve.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    what = serve.add_mutually_exclusive_group()
    what.add_argument("--reply", help="always answer this text")
    what.add_argument("--echo", action="store_true", help="answer the last user or tool text")
    what.add_argument("--script", help="module:attribute of a script")
    serve.add_argument("--latency", type=float, default=0.0)
    serve.add_argument("--token-rate", type=float, default=None)
    serve.add_argument("--chunk-chars", type=int, default=None)
    serve.add_argument("--version", default=None, help="the server version it reports")
    serve.add_argument(
        "--engine",
        choices=("ollama", "vllm", "sglang", "llamacpp"),
        default="ollama",
        help="the server to emulate (llamacpp: llama-server, serving the first of --models)",
    )
    serve.add_argument("--model", default=None, help="vllm, sglang: the served model")
    serve.add_argument("--models", default="llama3.1,llama3.2,llama3.3")
    serve.add_argument(
        "--max-records",
        type=int,
        default=1000,
        help="requests kept in memory, newest first (default 1000)",
    )
    # Parsed by `_llama_server.main`: everything after the word is its own.
    commands.add_parser(
        "llama-server", help="build (or locate) the real llama-server the tests run", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["llama-server"]:
        from agent.testing._llama_server import main as llama_server

        return llama_server(argv[1:])
    args = _parser().parse_args(argv)
    try:
        from agent.testing import (
            LlamaCppEmulator,
            OllamaEmulator,
            SGLangEmulator,
            VLLMEmulator,
        )
    except ImportError as exc:  # the testing extra is missing: its message says how to fix it
        return _fail(str(exc), 1)
    try:
        if not 0 <= args.port <= 65535:
            raise _UsageError(
                f"--port {args.port} is not a TCP port: give 1-65535, or 0 to pick a free one"
            )
        if args.max_records < 0:
            raise _UsageError(f"--max-records {args.max_records} must be 0 or more")
        script = _load_script(args)
    except _UsageError as exc:
        return _fail(str(exc), USAGE_ERROR)

    async def run() -> None:
        emulator: OllamaEmulator | VLLMEmulator | SGLangEmulator | LlamaCppEmulator
        if args.engine == "vllm":
            emulator = VLLMEmulator(
                script,
                **({"model": args.model} if args.model else {}),
                **({"version": args.version} if args.version else {}),
                latency=args.latency,
                token_rate=args.token_rate,
                port=args.port,
                max_records=args.max_records,
            )
        elif args.engine == "sglang":
            emulator = SGLangEmulator(
                script,
                **({"model_path": args.model} if args.model else {}),
                **({"version": args.version} if args.version else {}),
                latency=args.latency,
                token_rate=args.token_rate,
                port=args.port,
                max_records=args.max_records,
            )
        elif args.engine == "llamacpp":
            emulator = LlamaCppEmulator(
                script,
                alias=next((m for m in args.models.split(",") if m), "llama3.1"),
                latency=args.latency,
                token_rate=args.token_rate,
                port=args.port,
                max_records=args.max_records,
            )
        else:
            emulator = OllamaEmulator(
                script,
                models=[m for m in args.models.split(",") if m],
                latency=args.latency,
                token_rate=args.token_rate,
                chunk_chars=args.chunk_chars,
                version=args.version or "0.12.6",
                port=args.port,
                max_records=args.max_records,
            )
        async with emulator as emu:
            print(f"listening on {emu.url}", flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # the port is taken, or not ours to bind
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        return _fail(
            f"cannot listen on 127.0.0.1:{args.port} ({reason}); pick another --port "
            "(0 picks a free one and prints it)",
            1,
        )
    return 0


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
