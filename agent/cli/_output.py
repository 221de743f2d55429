"""What the command prints: answer text on stdout, everything else on stderr.

On a terminal: colours, a spinner while the model or a tool works, a progress bar for pulls.
Otherwise plain text (rich drops the styles; the spinner and bars are not started), so
`llama-agent run config.yaml "task" > answer.txt` captures just the answer. `NO_COLOR` set
(https://no-color.org): plain text on a terminal too, without a single escape sequence.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.status import Status
from rich.text import Text

from agent.backends import OllamaBackend
from agent.loop import (
    CallMalformed,
    Event,
    RunFinished,
    RunResult,
    RunStarted,
    StepFinished,
    TextDelta,
    ToolCallFinished,
    ToolCallRejected,
    ToolCallStarted,
)

__all__ = ["Printer", "compact_call", "first_line", "pull_model"]


def show_tool_tracebacks() -> None:
    """`-v`: a failing tool's traceback on stderr too (logged at DEBUG, after its one-line
    warning); without `-v` Python's last-resort handler shows the warning line alone."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("agent.tools", "tools"):  # the toolkit's logger, the built-ins' loggers
        log = logging.getLogger(name)
        if not any(getattr(h, "_llama_agent", False) for h in log.handlers):
            handler._llama_agent = True  # type: ignore[attr-defined]
            log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def first_line(text: str, limit: int = 100) -> str:
    """The first line of `text`, cut to `limit` characters, with a note of what was left out."""
    lines = text.strip().splitlines() or [""]
    line = lines[0]
    more = len(lines) - 1
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    if more:
        line += f" (+{more} line{'s' if more > 1 else ''})"
    return line


def compact_call(name: str, arguments: Mapping[str, Any], limit: int = 100) -> str:
    """`name(arg="value", n=3)` on one line, long values cut."""
    parts = []
    for key, value in arguments.items():
        shown = json.dumps(value, ensure_ascii=False)
        if isinstance(value, str) and "\n" in value:
            shown = json.dumps(first_line(value, 40), ensure_ascii=False)
        parts.append(f"{key}={shown}")
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 2] + "…)"


class Printer:
    """Prints one command's output. Create one per command invocation."""

    def __init__(
        self, *, verbose: bool = False, out: Console | None = None, err: Console | None = None
    ) -> None:
        # No wrapping (answers and prompts stay as written), no `:name:` emoji codes; under
        # NO_COLOR no styles at all (rich would still write bold and dim) and no spinner.
        plain = bool(os.environ.get("NO_COLOR"))
        options: dict[str, Any] = {"highlight": False, "soft_wrap": True, "emoji": False}
        if plain:
            options["color_system"] = None
        self.out = out or Console(**options)
        self.err = err or Console(stderr=True, **options)
        self.verbose = verbose
        self.fancy = self.err.is_terminal and not plain
        self._status: Status | None = None
        self._mid_line = False  # answer text on stdout not yet ended by a newline

    # --- basics ---------------------------------------------------------------------------

    def wait(self, message: str) -> None:
        """Show a spinner with `message` (only on a terminal)."""
        if not self.fancy or (self._mid_line and self.out.is_terminal):
            # A spinner drawn after half a line of answer would erase that line when it stops.
            return
        if self._status is None:
            self._status = self.err.status(message, spinner="dots")
            self._status.start()
        else:
            self._status.update(message)

    def idle(self) -> None:
        """Stop the spinner."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def write(self, text: str) -> None:
        """Raw text on stdout, exactly as given (answers, prompts, JSON)."""
        self.idle()
        self.out.file.write(text)
        self.out.file.flush()
        if text:
            self._mid_line = not text.endswith("\n")

    def end_line(self) -> None:
        """End the answer's last line, so what follows starts on its own."""
        if self._mid_line:
            self.write("\n")

    def note(self, markup: str) -> None:
        """A line on stderr (rich markup; styles dropped when not a terminal)."""
        self.idle()
        if self._mid_line and self.out.is_terminal and self.err.is_terminal:
            self.end_line()
        self.err.print(markup)

    def error(self, message: str) -> None:
        """An error on stderr: one line per line of `message`, each as written."""
        self.idle()
        if self._mid_line:
            self.end_line()
        for line in message.splitlines() or [""]:
            self.err.print(Text(line, style="red"))

    def mark(self, kind: str) -> str:
        """A status mark: ✓ ✗ ! on a terminal, words otherwise."""
        fancy = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]"}
        plain = {"ok": "ok  ", "fail": "FAIL", "warn": "warn"}
        return fancy[kind] if self.fancy else plain[kind]

    # --- a run's events -------------------------------------------------------------------

    def event(self, event: Event) -> None:
        """Show one event of a streamed run."""
        if isinstance(event, RunStarted | StepFinished):
            self.wait("thinking…")
        elif isinstance(event, TextDelta):
            self.write(event.text)
        elif isinstance(event, ToolCallStarted):
            arrow = "→" if self.fancy else "->"
            self.note(f"[cyan]{arrow}[/] {escape(compact_call(event.name, event.arguments))}")
            self.wait(f"running {event.name}…")
        elif isinstance(event, ToolCallFinished):
            self._finished(event)
        elif isinstance(event, ToolCallRejected):
            call = compact_call(event.name, event.arguments)
            self.note(f"{self.mark('fail')} {escape(call)}: {escape(first_line(event.error))}")
        elif isinstance(event, CallMalformed):
            self.note(f"{self.mark('fail')} malformed call: {escape(first_line(event.reason))}")
        elif isinstance(event, RunFinished):
            self.idle()
            self.end_line()

    def _finished(self, event: ToolCallFinished) -> None:
        arrow = "←" if self.fancy else "<-"
        style = "red" if event.is_error else "dim"
        head = f"[cyan]{arrow}[/] {escape(event.name)} [dim]{event.duration:.2f}s[/]"
        if self.verbose:
            self.note(head)
            self.err.print(Text(event.result, style=style))
        else:
            self.note(f"{head} [{style}]{escape(first_line(event.result))}[/]")

    def prompt(self, text: str) -> None:
        """Prompt text under `-v`, dimmed, on stderr."""
        self.idle()
        self.err.print(Text(text, style="dim"), end="" if text.endswith("\n") else "\n")

    def outcome(self, result: RunResult) -> None:
        """How the run ended, when not with an answer (and usage under `-v`)."""
        if result.status != "answered":
            why = f": {result.error}" if result.error else ""
            label = "stopped" if result.status != "error" else "failed"
            self.note(
                f"[yellow]{label} ({result.status}) after {result.steps} steps{escape(why)}[/]"
            )
        if self.verbose:
            total = result.usage.total
            self.note(
                f"[dim]{result.steps} steps, {total.prompt_eval_count} prompt + "
                f"{total.eval_count} generated tokens[/]"
            )


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
