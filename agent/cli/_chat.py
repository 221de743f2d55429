"""`llama-agent chat`: the conversation loop, its /commands, and how the user's lines are read.

On a terminal the lines come from prompt-toolkit (line editing, arrow keys, Ctrl-R through a
history file in the user's data folder); from a pipe they are read plainly, one per line. In
both, a line starting with \"\"\" opens a multi-line message that a line ending with \"\"\" closes,
as in `ollama run`. Ctrl-C during a reply stops that reply and keeps the conversation;
Ctrl-D or /bye leaves. A /command never reaches the model.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text

from agent.cli._output import Printer, compact_call, first_line
from agent.cli._session import Renderer, run_task
from agent.loop import Agent, ApprovalRequested, RunResult

__all__ = [
    "COMMANDS",
    "ReadLine",
    "chat_session",
    "history_file",
    "line_reader",
    "plain_reader",
    "prompt_toolkit_reader",
    "read_in_daemon_thread",
    "read_message",
]

PROMPT = "you> "
MORE = "...  "

ReadLine = Callable[[str], str]
"""Reads one line after showing a prompt; EOFError at the end, KeyboardInterrupt on Ctrl-C."""

COMMANDS = {
    "/help": "this list",
    "/bye": "leave (also Ctrl-D, /exit, /quit)",
    "/reset": "start a new conversation (also /clear)",
    "/history": "show the conversation so far",
    "/tools": "list the agent's tools",
    "/save FILE": "write the conversation to FILE as JSON",
}


# --- reading lines ----------------------------------------------------------------------------


def history_file() -> Path:
    """Where the chat's input history is kept: the user's data folder (XDG on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "llama-agent" / "chat_history"


def plain_reader() -> ReadLine:
    """Lines from stdin as they come (a pipe, a file): no prompt, no editing."""

    def read(_prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


def prompt_toolkit_reader(
    *, history: Path | None, input: Any = None, output: Any = None
) -> ReadLine:
    """Lines read with prompt-toolkit: editing, history (↑, ↓, Ctrl-R) saved to `history`."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    kept: History = InMemoryHistory()
    if history is not None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            kept = FileHistory(str(history))
        except OSError:
            pass  # a read-only home: history for this session only
    session: PromptSession[str] = PromptSession(history=kept, input=input, output=output)

    def read(prompt: str) -> str:
        return session.prompt(prompt)

    return read


def line_reader(printer: Printer) -> ReadLine:
    """prompt-toolkit when stdin and stderr are a terminal, plain lines otherwise."""
    if not (sys.stdin.isatty() and printer.err.is_terminal):
        return plain_reader()
    from prompt_toolkit.output import create_output

    _restore_terminal_at_exit()
    # The prompt goes where the notes go (stderr), so stdout holds only the answers.
    return prompt_toolkit_reader(history=history_file(), output=create_output(stdout=sys.stderr))


def _restore_terminal_at_exit() -> None:
    # A SIGINT from outside (`kill -INT`) ends the command while prompt-toolkit holds the
    # terminal in raw mode, in its thread: the terminal is put back as it was found.
    if sys.platform == "win32":  # pragma: no cover
        return
    import atexit
    import termios

    try:
        saved = termios.tcgetattr(sys.stdin.fileno())
    except (termios.error, OSError, ValueError):
        return
    atexit.register(termios.tcsetattr, sys.stdin.fileno(), termios.TCSADRAIN, saved)


def read_message(read: ReadLine) -> str:
    """One message: a line, or the lines between \"\"\" and \"\"\" (Ollama's multi-line input)."""
    line = read(PROMPT)
    if not line.lstrip().startswith('"""'):
        return line
    rest = line.lstrip()[3:]
    lines: list[str] = []
    while not rest.rstrip().endswith('"""'):
        lines.append(rest)
        rest = read(MORE)
    lines.append(rest.rstrip()[:-3])
    return "\n".join(lines).strip("\n")


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


# --- the conversation ---------------------------------------------------------------------------


async def stoppable(work: Callable[[], Awaitable[RunResult]]) -> RunResult | None:
    """`work()`, or None when Ctrl-C (SIGINT) stops it first."""
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return await work()  # no signal handlers here: Ctrl-C ends the command
    result: RunResult | None = None
    async with anyio.create_task_group() as group:

        async def watch(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                task_status.started()
                async for _ in signals:
                    group.cancel_scope.cancel()
                    return

        await group.start(watch)
        result = await work()
        group.cancel_scope.cancel()
    return result


class _Chat:
    def __init__(
        self,
        agent: Agent,
        printer: Printer,
        renderer: Renderer | None,
        session: str | None,
        approvals: Approvals | None = None,
    ) -> None:
        self.agent = agent
        self.printer = printer
        self.renderer = renderer
        self.session = session
        self.approvals = approvals
        self.history: RunResult | None = None

    async def command(self, line: str) -> bool:
        """Do a /command; False when it is the one that leaves."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        note = self.printer.note
        if name in ("/bye", "/exit", "/quit"):
            return False
        if name in ("/reset", "/clear"):
            self.history = None
            if self.session is not None:
                await self.agent.store.delete(self.session)
            note("[dim]new conversation[/]")
        elif name in ("/help", "/?"):
            for usage, what in COMMANDS.items():
                note(f"  [bold]{escape(usage):<12}[/] {what}")
            note('  [bold]"""[/]          starts and ends a message of several lines')
        elif name == "/history":
            self._show_history()
        elif name == "/tools":
            for tool in self.agent.tools:
                note(f"  [bold cyan]{escape(tool.name)}[/] {escape(first_line(tool.description))}")
            if not self.agent.tools:
                note("[dim]no tools[/]")
        elif name == "/save":
            self._save(argument)
        else:
            note(f"[red]unknown command {escape(name)}[/]: /help lists them")
        return True

    def _show_history(self) -> None:
        messages = self.history.messages if self.history else []
        shown = [m for m in messages if m.role != "system"]
        if not shown:
            self.printer.note("[dim]nothing yet[/]")
        for message in shown:
            label = {"user": "you", "assistant": "agent"}.get(message.role, message.role)
            text = message.content
            if message.tool_calls:
                text = "; ".join(compact_call(c.name, c.arguments) for c in message.tool_calls)
            elif message.role not in ("user", "assistant"):
                text = first_line(text)
            self.printer.note(f"[bold]{escape(label)}>[/] {escape(text)}")

    def _save(self, target: str) -> None:
        if not target:
            self.printer.note("[red]/save needs a file name[/]: /save chat.json")
            return
        data = self.history.to_dict() if self.history else {"messages": []}
        path = Path(target).expanduser()
        try:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            self.printer.note(f"[red]cannot save to {escape(str(path))}[/]: {escape(str(exc))}")
            return
        self.printer.note(f"[dim]saved to {escape(str(path))}[/]")

    async def turn(self, text: str) -> RunResult | None:
        """One exchange; None when Ctrl-C stopped it (the conversation stays as it was)."""
        # A stored session carries the conversation itself.
        history = self.history if self.session is None else None

        def work() -> Awaitable[RunResult]:
            return run_task(
                self.agent,
                text,
                self.printer,
                history=history,
                renderer=self.renderer,
                session=self.session,
                approvals=self.approvals,
            )

        result = await stoppable(work)
        if result is None:
            self.printer.idle()
            self.printer.end_line()
            self.printer.note("[yellow]stopped[/] [dim](that message is dropped; /bye leaves)[/]")
        return result


async def chat_session(
    agent: Agent,
    printer: Printer,
    read: ReadLine,
    *,
    renderer: Renderer | None = None,
    session: str | None = None,
    approvals: Approvals | None = None,
) -> RunResult | None:
    """Talk with the agent until EOF or /bye; returns the last exchange's result.

    `session`: each turn continues the conversation stored under that name (across restarts);
    `/reset` then deletes it.
    """
    printer.note("[dim]/help lists the commands, /bye (or Ctrl-D) leaves[/]")
    if session is not None:
        stored = await agent.store.load(session)
        count = len(stored.messages) if stored is not None else 0
        printer.note(f"[dim]session {escape(session)}: {count} message(s) so far[/]")
    chat = _Chat(agent, printer, renderer, session, approvals)
    while True:
        try:
            line = await read_in_daemon_thread(lambda: read_message(read))
        except EOFError:
            printer.end_line()
            return chat.history
        except KeyboardInterrupt:  # Ctrl-C typed at prompt-toolkit's prompt: a fresh line
            printer.note("[dim]Ctrl-D or /bye leaves[/]")
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not await chat.command(text):
                return chat.history
            continue
        result = await chat.turn(text)
        if result is None:
            continue
        if result.status == "error":
            return result
        chat.history = result


NO_TERMINAL = (
    "it needs approval and there is no terminal to ask on; run the command in a terminal, or "
    "pass --approve to approve every call"
)
_ANSWERS = {"y": "yes", "yes": "yes", "n": "no", "no": "no", "a": "always", "always": "always"}


class Approvals:
    """Decides each approval request of a command's runs."""

    def __init__(
        self,
        printer: Printer,
        *,
        approve_all: bool,
        interactive: bool | None = None,
        read_line: Callable[[str], str] | None = None,
    ) -> None:
        self._printer = printer
        self._approve_all = approve_all
        self._interactive = sys.stdin.isatty() if interactive is None else interactive
        self._read_line = read_line or (lambda prompt: printer.err.input(Text(prompt)))
        self._always: set[str] = set()  # tools the user approved for the whole command

    async def decide(self, event: ApprovalRequested) -> None:
        """Approve or deny `event` (it waits until then)."""
        from agent.cli._chat import read_in_daemon_thread  # the one Ctrl-C-safe reader

        if self._approve_all or event.tool in self._always:
            event.approve()
            return
        if not self._interactive:
            self._printer.note(f"{self._printer.mark('fail')} {escape(event.tool)}: not approved")
            event.deny(NO_TERMINAL)
            return
        self._show(event)
        prompt = "run it? [y]es / [n]o / [a]lways for this tool: "
        while True:
            try:
                line = await read_in_daemon_thread(lambda: self._read_line(prompt))
            except EOFError:
                self._printer.end_line()
                event.deny("the user did not answer")
                return
            answer = _ANSWERS.get(line.strip().lower())
            if answer is not None:
                break
        if answer == "no":
            event.deny("the user said no")
        elif answer == "always":
            self._always.add(event.tool)
            event.approve(always=True)
        else:
            event.approve()

    def _show(self, event: ApprovalRequested) -> None:
        """The call, in full: code as highlighted code, other arguments as JSON."""
        printer = self._printer
        printer.idle()
        printer.end_line()
        printer.note(f"[bold yellow]approval needed:[/] [bold]{escape(event.tool)}[/]")
        arguments = dict(event.arguments)
        code = arguments.pop("code", None)
        if isinstance(code, str):
            if printer.fancy:
                printer.err.print(Syntax(code, "python", line_numbers=True, word_wrap=True))
            else:
                printer.err.print(Text(code))
        if arguments or not isinstance(code, str):
            text = json.dumps(arguments, indent=2, ensure_ascii=False)
            printer.err.print(Text(text))
