"""The installed command in real processes, against the emulator: what a user runs."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import ExitCode
from agent.testing import answer, call_tool
from tests.cli.conftest import StartEmulator

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("llama-agent")


def llama_agent(
    *args: str, host: str | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    if host is not None:
        env["OLLAMA_HOST"] = host
    command = [sys.executable, "-m", "agent"] if module else [str(SCRIPT)]
    # stdin is /dev/null: piped text joins the task, and the test runner's stdin may be a pipe.
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")


def test_run_with_a_tool_call(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(call_tool("calculate", {"expression": "3*7"}, then="21."))
    done = llama_agent("run", str(config), "3*7?", host=emu.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "21.\n"
    assert '-> calculate(expression="3*7")' in done.stderr


def test_python_dash_m_agent_json(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Hi."))
    done = llama_agent("run", str(config), "hello", "--json", host=emu.url, module=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "Hi."


def test_prompt_and_tools(config: Path) -> None:
    prompt = llama_agent("prompt", str(config), "hello")
    assert prompt.returncode == 0, prompt.stderr
    assert prompt.stdout.startswith("<|begin_of_text|>")
    tools = llama_agent("tools", str(config), "--json")
    assert [t["name"] for t in json.loads(tools.stdout)] == ["wolfram_alpha", "calculate"]


def test_check(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("x"))
    done = llama_agent("check", str(config), host=emu.url)
    assert done.returncode == 0, done.stderr
    assert "ok   model: llama3.1" in done.stderr


def test_dead_ollama_and_missing_model_exit_codes(
    config: Path, emulator: StartEmulator, dead_url: str
) -> None:
    dead = llama_agent("run", str(config), "hi", host=dead_url)
    assert dead.returncode == ExitCode.OLLAMA_UNREACHABLE
    assert dead.stderr.startswith(f"error: cannot reach Ollama at {dead_url}")
    assert "Traceback" not in dead.stderr

    emu = emulator(answer("x"))
    missing = llama_agent("run", str(config), "hi", "--model", "llama3.2:1b", host=emu.url)
    assert missing.returncode == ExitCode.MODEL_MISSING
    assert missing.stderr.startswith("error: model 'llama3.2:1b' is not available")


def test_config_error_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: llama3.1\ntools: [serch]\n")
    done = llama_agent("run", str(path), "hi")
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr == f"{path}:2: tools[0]: unknown built-in 'serch' (did you mean 'search'?)\n"


def read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """What the terminal shows, up to `marker` (or whatever came within `timeout`)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the other side closed
                break
    return seen


def test_ctrl_c_at_the_chat_prompt_exits_at_once(config: Path, dead_url: str) -> None:
    # At `you>` the line is read in a thread blocked in input(); Ctrl-C must not wait for Enter.
    main, terminal = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    chat = subprocess.Popen(
        [str(SCRIPT), "chat", str(config), "--host", dead_url],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    try:
        assert b"you>" in read_until(main, b"you>", timeout=30)
        chat.send_signal(signal.SIGINT)
        code = chat.wait(timeout=10)  # it used to wait here until Enter
        assert code == ExitCode.INTERRUPTED
        assert b"interrupted" in read_until(main, b"interrupted", timeout=5)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        os.close(main)


def test_a_failing_tool_is_one_line_and_its_traceback_only_with_v(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    (tmp_path / "mytools.py").write_text(
        "def explode(reason: str) -> str:\n"
        '    """Fail on purpose.\n\n    Args:\n        reason: Why.\n    """\n'
        "    raise RuntimeError(reason)\n"
    )
    config = tmp_path / "agent.yaml"
    config.write_text("model: llama3.1\ntools:\n  - mytools:explode\n")
    emu = emulator(call_tool("explode", {"reason": "on purpose"}, then="It failed."))
    quiet = llama_agent("run", str(config), "go", host=emu.url)
    assert quiet.returncode == 0, quiet.stderr
    failures = [line for line in quiet.stderr.splitlines() if "tool explode failed" in line]
    assert len(failures) == 1, quiet.stderr
    assert "RuntimeError: on purpose" in failures[0]
    assert "Traceback" not in quiet.stderr
    loud = llama_agent("run", str(config), "go", "-v", host=emu.url)
    assert loud.returncode == 0, loud.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert "raise RuntimeError(reason)" in loud.stderr
