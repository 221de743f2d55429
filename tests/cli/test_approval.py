"""Approval of calls on the command line, in real processes against the emulator: the prompt on a
terminal (yes, no, always), `--approve`, and no terminal (refused, the model told why)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from agent.testing import Script, ScriptRequest, call_tools, tool_call_text
from tests.cli.conftest import StartEmulator

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("llama-agent")
TOOLS = '''
from pathlib import Path


def touch(name: str) -> str:
    """Create a file.

    Args:
        name: The file's name.
    """
    Path(__file__).with_name(name).write_text("made")
    return f"created {name}"
'''
CONFIG = """\
model: llama3.1
tools:
  - import: mytools:touch
    approval: true
limits:
  max_steps: 4
"""


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "mytools.py").write_text(TOOLS)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def _script(*names: str) -> Script:
    return call_tools([("touch", {"name": n}) for n in names], then=lambda r: f"Result: {r}")


def _run(
    config: Path, host: str, *extra: str, answers: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": host}
    command = [str(SCRIPT), "run", str(config), "make the files", *extra]
    if answers is None:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    # A terminal on stdin: the command asks, and reads the answers typed there.
    master, slave = pty.openpty()
    try:
        os.write(master, answers.encode())
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
            stdin=slave,
        )
    finally:
        os.close(slave)
        os.close(master)


def test_with_no_terminal_and_no_flag_the_call_is_refused_and_the_model_told(
    config: Path, emulator: StartEmulator
) -> None:
    emu = emulator(_script("a.txt"))
    done = _run(config, emu.url)
    assert done.returncode == 0, done.stderr
    assert not (config.parent / "a.txt").exists()
    assert "not approved" in done.stderr
    assert done.stdout.startswith("Result: Error: the call to touch was not approved")
    assert "there is no terminal to ask on" in done.stdout
    assert "--approve" in emu.requests[-1].prompt


def test_the_approve_flag_approves_every_call(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(_script("a.txt", "b.txt"))
    done = _run(config, emu.url, "--approve")
    assert done.returncode == 0, done.stderr
    assert (config.parent / "a.txt").exists()
    assert (config.parent / "b.txt").exists()
    assert "approval needed" not in done.stderr


@pytest.mark.parametrize(("answer", "made"), [("y\n", True), ("n\n", False), ("what\nyes\n", True)])
def test_on_a_terminal_the_call_is_shown_and_the_answer_followed(
    config: Path, emulator: StartEmulator, answer: str, made: bool
) -> None:
    emu = emulator(_script("a.txt"))
    done = _run(config, emu.url, answers=answer)
    assert done.returncode == 0, done.stderr
    assert "approval needed: touch" in done.stderr
    assert '"name": "a.txt"' in done.stderr  # the arguments in full
    assert (config.parent / "a.txt").exists() is made
    if not made:
        assert "the user said no" in done.stdout


def test_always_approves_the_tools_later_calls_without_asking(
    config: Path, emulator: StartEmulator
) -> None:
    emu = emulator(_script("a.txt", "b.txt"))
    done = _run(config, emu.url, answers="a\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("approval needed") == 1
    assert (config.parent / "b.txt").exists()


def test_code_is_shown_in_full(tmp_path: Path, emulator: StartEmulator) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: llama3.1\nsandbox: none\ntools: [code]\n")
    code = "\n".join(f"print({i})" for i in range(30))
    emu = emulator(call_tools([("code_interpreter", {"code": code})], then="Done."))
    done = _run(config, emu.url, answers="n\n")
    assert done.returncode == 0, done.stderr
    assert "approval needed: code_interpreter" in done.stderr
    assert all(f"print({i})" in done.stderr for i in range(30))


def test_chat_asks_too_and_remembers_always_across_turns(
    config: Path, emulator: StartEmulator
) -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results and request.raw and "ipython" in request.prompt[-200:]:
            return "Done.<|eot_id|>"
        turn = request.prompt.count("<|start_header_id|>user")
        return tool_call_text("touch", {"name": f"turn{turn}.txt"})

    emu = emulator(script)
    env = {**os.environ, "OLLAMA_HOST": emu.url}
    master, slave = pty.openpty()
    try:
        os.write(master, b"first\na\nsecond\n\x04")
        done = subprocess.run(
            [str(SCRIPT), "chat", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
            stdin=slave,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("approval needed") == 1  # "always" held for the second turn
    assert len(list(config.parent.glob("*.txt"))) == 2  # one call per turn, both ran
