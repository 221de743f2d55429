"""How the command shows a run: compact call lines, and a spinner that never eats the answer."""

from __future__ import annotations

import io

from rich.console import Console

from agent.backends import Usage
from agent.cli._output import Printer, compact_call, first_line
from agent.loop import RunResult, RunStarted, StepFinished, TextDelta, ToolCallStarted


def test_first_line_cuts_and_counts() -> None:
    assert first_line("one\ntwo\nthree") == "one (+2 lines)"
    assert first_line("x" * 150, 20) == "x" * 19 + "…"
    assert first_line("  padded  \n") == "padded"
    assert first_line("") == ""


def test_compact_call() -> None:
    assert compact_call("add", {"a": 1, "b": "two"}) == 'add(a=1, b="two")'
    assert compact_call("run_python", {"code": "import os\nprint(1)"}) == (
        'run_python(code="import os (+1 line)")'
    )
    long = compact_call("search", {"query": "q" * 200}, limit=30)
    assert len(long) == 30
    assert long.endswith("…)")


def console(file: io.StringIO, *, terminal: bool) -> Console:
    return Console(file=file, force_terminal=terminal, highlight=False, soft_wrap=True)


def terminal_printer() -> tuple[Printer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(out=console(out, terminal=True), err=console(err, terminal=True))
    assert printer.fancy
    return printer, out, err


def test_spinner_waits_for_the_answer_line_to_end() -> None:
    printer, out, _ = terminal_printer()
    printer.event(RunStarted(run_id="r", model="m", task="t"))
    assert printer._status is not None  # thinking…
    printer.event(TextDelta(step=1, text="Hello"))
    assert printer._status is None
    printer.event(StepFinished(step=1, usage=Usage(), done_reason="stop"))
    # Drawn now, the spinner would share the answer's line and erase it when it stops.
    assert printer._status is None
    printer.end_line()
    assert out.getvalue() == "Hello\n"


def test_tool_lines_start_on_their_own_line_on_a_terminal() -> None:
    printer, out, err = terminal_printer()
    printer.event(TextDelta(step=1, text="Let me check."))
    printer.event(
        ToolCallStarted(step=1, index=0, id="c", name="calculate", tool="calculate", arguments={})
    )
    printer.idle()
    assert out.getvalue() == "Let me check.\n"
    assert "\x1b[36m→\x1b[0m calculate()\n" in err.getvalue()  # cyan arrow, own line


def test_plain_output_has_no_spinner_and_no_codes() -> None:
    err = io.StringIO()
    printer = Printer(out=console(io.StringIO(), terminal=False), err=console(err, terminal=False))
    assert not printer.fancy
    printer.event(RunStarted(run_id="r", model="m", task="t"))
    assert printer._status is None
    printer.outcome(RunResult(answer="", messages=(), status="step_limit", steps=3))
    assert err.getvalue() == "stopped (step_limit) after 3 steps\n"
