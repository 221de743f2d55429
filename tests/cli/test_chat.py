"""`llama-agent chat` as good as `ollama run`: /commands that never reach the model, \"\"\"
multi-line input, prompt-toolkit's editing and history on a terminal, Ctrl-C stopping a reply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from agent.cli._chat import chat_session, prompt_toolkit_reader, read_message
from agent.cli._output import Printer
from agent.config import build_agent, load_config
from agent.testing import OllamaEmulator, sequence
from tests.cli.conftest import StartEmulator
from tests.cli.test_subprocess import read_until

SCRIPT = Path(sys.executable).with_name("llama-agent")


def generate_prompts(emu: OllamaEmulator) -> list[str]:
    return [r.prompt or "" for r in emu.requests if r.path == "/api/generate"]


@pytest.mark.slow
def test_commands_and_multi_line_input_through_a_pipe(
    config: Path, tmp_path: Path, emulator: StartEmulator
) -> None:
    emu = emulator(sequence("Two lines.", "Still here."))
    saved = tmp_path / "chat.json"
    lines = [
        "/help",
        "/tools",
        '"""',
        "line one",
        'line two"""',
        "/history",
        "/nosuch",
        f"/save {saved}",
        "/reset",
        "again",
        "/bye",
        "never sent",
    ]
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    done = subprocess.run(
        [str(SCRIPT), "chat", str(config), "--host", emu.url],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Two lines.\nStill here.\n"
    for shown in ("/save FILE", "/bye", "calculate", "you> line one\nline two", "agent> Two"):
        assert shown in done.stderr, shown
    assert "unknown command /nosuch: /help lists them" in done.stderr
    first, second = generate_prompts(emu)
    assert "line one\nline two" in first
    assert "/help" not in first
    assert "/tools" not in first
    assert "line one" not in second  # /reset
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages][-2:] == ["user", "assistant"]


def test_read_message_joins_triple_quoted_lines() -> None:
    given = iter(['"""first', "", 'last"""'])
    assert read_message(lambda _prompt: next(given)) == "first\n\nlast"
    given = iter(['"""one line"""'])
    assert read_message(lambda _prompt: next(given)) == "one line"
    assert read_message(lambda _prompt: "plain") == "plain"


def test_prompt_toolkit_reads_edits_and_keeps_history(tmp_path: Path) -> None:
    history = tmp_path / "data" / "chat_history"
    with create_pipe_input() as pipe:
        read = prompt_toolkit_reader(history=history, input=pipe, output=DummyOutput())
        pipe.send_text("helo\x1b[Dlx\x7f\r")  # left arrow, type, backspace: "hello"
        assert read("you> ") == "hello"
        pipe.send_text("\x1b[A\r")  # up arrow: the last line again
        assert read("you> ") == "hello"
        pipe.send_text('"""a\rb"""\r')
        assert read_message(read) == "a\nb"
    assert "hello" in history.read_text()
    with create_pipe_input() as pipe:  # a new session finds the history on disk
        read = prompt_toolkit_reader(history=history, input=pipe, output=DummyOutput())
        pipe.send_text("\x12hel\r\r")  # Ctrl-R, search, accept
        assert read("you> ") == "hello"


def test_chat_session_on_the_prompt_toolkit_path(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(sequence("Hello Ada.", "You are Ada."))
    out, err = Console(file=open(os.devnull, "w")), Console(file=open(os.devnull, "w"))  # noqa: SIM115
    printer = Printer(out=out, err=err)
    agent = build_agent(load_config(config), host=emu.url)

    async def go() -> None:
        with create_pipe_input() as pipe:
            read = prompt_toolkit_reader(history=None, input=pipe, output=DummyOutput())
            pipe.send_text("I am Ada.\rWho am I?\r/bye\r")
            async with agent:
                last = await chat_session(agent, printer, read)
            assert last is not None
            assert last.answer == "You are Ada."

    anyio.run(go)
    assert "I am Ada." in generate_prompts(emu)[1]
    out.file.close()
    err.file.close()


@pytest.mark.slow
def test_ctrl_c_stops_the_reply_and_keeps_the_conversation(
    config: Path, tmp_path: Path, emulator: StartEmulator
) -> None:
    long = " ".join(f"word{i}" for i in range(400))
    emu = emulator(sequence("One.", long, "Three."), token_rate=40)
    main, terminal = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    env["XDG_DATA_HOME"] = str(tmp_path)
    chat = subprocess.Popen(
        [str(SCRIPT), "chat", str(config), "--host", emu.url],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    try:
        assert b"you>" in read_until(main, b"you>", timeout=30)
        os.write(main, b"first\r")
        assert b"One." in read_until(main, b"One.", timeout=30)
        os.write(main, b"second\r")
        assert b"word3" in read_until(main, b"word3", timeout=30)
        chat.send_signal(signal.SIGINT)
        assert b"stopped" in read_until(main, b"stopped", timeout=10)
        assert chat.poll() is None  # still chatting
        assert b"you>" in read_until(main, b"you>", timeout=10)
        os.write(main, b"third\r")
        assert b"Three." in read_until(main, b"Three.", timeout=30)
        os.write(main, b"/bye\r")
        assert chat.wait(timeout=10) == 0
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        os.close(main)
    last = generate_prompts(emu)[-1]
    for kept in ("first", "One.", "third"):
        assert kept in last
    assert "second" not in last  # the stopped exchange is dropped
    assert (tmp_path / "llama-agent" / "chat_history").is_file()
