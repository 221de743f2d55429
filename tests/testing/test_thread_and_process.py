"""The emulator from synchronous code (a background thread) and as a process."""

from __future__ import annotations

import os
import subprocess
import sys

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
