"""The CLI's answer to an `ApprovalRequested` event: ask on the terminal, or follow `--approve`.

On a terminal the call is shown in full (code as code) and the user answers yes, no, or always
for this tool (remembered for the rest of the command: every turn of a chat). With `--approve`
every call is approved unasked. With no terminal to ask on (stdin piped, a script, CI) and no
`--approve`, the call is refused and the model is told why; the run goes on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text

from agent.cli._output import Printer
from agent.loop import ApprovalRequested

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
