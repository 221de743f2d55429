"""`llama-agent serve` (the agent over HTTP) and `llama-agent sessions` (the stored
conversations that `--session` and the server's sessions continue)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
from rich.markup import escape

from agent.cli._app import ExitCode
from agent.cli._output import Printer
from agent.cli._session import Overrides, _agent, _guarded
from agent.llama3 import Message
from agent.loop import SQLiteStore, message_to_dict

__all__ = ["serve", "sessions"]


def serve(
    config: Path | None,
    *,
    listen: str,
    port: int,
    api_keys: list[str],
    grace: float,
    host: str | None,
    model: str | None,
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
        agent, _ = _agent(config, host=host, overrides=Overrides(model=model))
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
