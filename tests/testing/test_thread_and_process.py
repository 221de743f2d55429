"""The emulator from synchronous code (a background thread) and as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.testing import OllamaEmulator, answer

CLIENT = """
import ollama
prompt = "<|start_header_id|>user<|end_header_id|>\\n\\nHi"
reply = ollama.Client().generate("llama3.1", prompt, raw=True)
print(reply.response)
"""


def test_start_in_thread_serves_a_subprocess_through_ollama_host() -> None:
    with OllamaEmulator(answer("Hello from the thread.")).start_in_thread() as emu:
        env = {**os.environ, "OLLAMA_HOST": emu.url}
        done = subprocess.run(
            [sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Hello from the thread."
        assert emu.completions[0].raw is True
        emu.portal.call(emu.refuse_connections)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{emu.url}/api/version")


def test_serve_command_runs_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.testing", "serve", "--reply", "Pong."],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:")
        url = first.removeprefix("listening on ")
        response = httpx.post(
            f"{url}/api/generate",
            json={"model": "llama3.1", "prompt": "x", "raw": True, "stream": False},
            timeout=30,
        )
        assert response.json()["response"] == "Pong."
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_on_a_taken_port_says_so_in_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "agent.testing", "serve", "--port", str(port), "--echo"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (address already in use); pick another "
        "--port (0 picks a free one and prints it)"
    )
    assert done.stdout == ""


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.testing", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--port", "99999"],
            "error: --port 99999 is not a TCP port: give 1-65535, or 0 to pick a free one",
        ),
        (
            ["--port", "-1"],
            "error: --port -1 is not a TCP port: give 1-65535, or 0 to pick a free one",
        ),
        (
            ["--script", "nosuch:x"],
            "error: --script nosuch:x: no module named 'nosuch' (run from the folder that holds "
            "it, or add that folder to PYTHONPATH)",
        ),
        (
            ["--script", "json:nosuch"],
            "error: --script json:nosuch: module json has no attribute 'nosuch'",
        ),
        (
            ["--script", "json"],
            "error: --script 'json' is not module:attribute (for instance "
            "my_tests.scripts:weather)",
        ),
        (
            ["--script", "json:__name__"],
            "error: --script json:__name__: __name__ is a str, not a script (a function of a "
            "ScriptRequest, or one with no arguments that returns such a function)",
        ),
        (["--max-records", "-5"], "error: --max-records -5 must be 0 or more"),
    ],
)
def test_serve_mistakes_are_one_line_and_a_usage_exit_code(args: list[str], message: str) -> None:
    done = _serve(*args)
    assert done.returncode == 2
    assert done.stderr == message + "\n"
    assert done.stdout == ""


def test_serve_reports_a_script_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken_script.py").write_text("import nothing_like_this\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent.testing", "serve", "--script", "broken_script:script"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: --script broken_script:script: importing broken_script failed: "
        "No module named 'nothing_like_this'\n"
    )


def test_serve_keeps_a_bounded_record_by_default() -> None:
    from agent.testing.__main__ import _parser

    assert _parser().parse_args(["serve"]).max_records == 1000
    assert _parser().parse_args(["serve", "--max-records", "5"]).max_records == 5
