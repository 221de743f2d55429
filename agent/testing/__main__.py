"""`python -m agent.testing serve`: run an `OllamaEmulator` as a process.

Prints `listening on http://127.0.0.1:PORT` on the first line of stdout, then serves until it
is terminated. The script is `--reply TEXT` (always that answer), `--echo`, or
`--script module:attribute` (a script object, or a function with no arguments returning one).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import anyio

from agent.testing._emulator import OllamaEmulator
from agent.testing._scripts import Script, answer, echo


def _load_script(args: argparse.Namespace) -> Script:
    if args.script:
        module_name, _, attribute = args.script.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        if getattr(target, "__code__", None) is not None and target.__code__.co_argcount == 0:
            target = target()
        script: Script = target
        return script
    if args.reply is not None:
        return answer(args.reply)
    return echo()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run an Ollama emulator until interrupted")
    serve.add_argument("--port", type=int, default=0)
    what = serve.add_mutually_exclusive_group()
    what.add_argument("--reply", help="always answer this text")
    what.add_argument("--echo", action="store_true", help="answer the last user or tool text")
    what.add_argument("--script", help="module:attribute of a script")
    serve.add_argument("--latency", type=float, default=0.0)
    serve.add_argument("--token-rate", type=float, default=None)
    serve.add_argument("--chunk-chars", type=int, default=None)
    serve.add_argument("--version", default="0.12.6")
    serve.add_argument("--models", default="llama3.1,llama3.2,llama3.3")
    args = parser.parse_args(argv)

    async def run() -> None:
        emulator = OllamaEmulator(
            _load_script(args),
            models=[m for m in args.models.split(",") if m],
            latency=args.latency,
            token_rate=args.token_rate,
            chunk_chars=args.chunk_chars,
            version=args.version,
            port=args.port,
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
        print(
            f"error: cannot listen on 127.0.0.1:{args.port} ({reason}); pick another --port "
            "(0 picks a free one and prints it)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
