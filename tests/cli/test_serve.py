"""`llama-agent run/chat --session`, `sessions` and `serve` in real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent.testing import echo
from tests.cli.conftest import StartEmulator

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("llama-agent")


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")


def _env(home: Path, host: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_AGENT_API_KEY"}
    return {**env, "OLLAMA_HOST": host, "LLAMA_AGENT_HOME": str(home)}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_run_session_continues_and_sessions_lists_shows_deletes(
    config: Path, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo("you said: "))
    env = _env(tmp_path / "home", emu.url)
    for task in ("first", "second"):
        done = _run("run", str(config), task, "--session", "s-1", env=env)
        assert done.returncode == 0, done.stderr
    assert emu.completions[1].prompt is not None
    assert "first" in emu.completions[1].prompt  # the second run saw the first

    listed = _run("sessions", "--json", env=env)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["s-1"]
    shown = _run("sessions", "show", "s-1", env=env)
    assert [line.split(":")[0] for line in shown.stdout.splitlines()] == [
        "system", "user", "assistant", "user", "assistant",
    ]  # fmt: skip
    assert _run("sessions", "delete", "s-1", env=env).returncode == 0
    assert _run("sessions", "show", "s-1", env=env).returncode == 1
    assert "no sessions" in _run("sessions", env=env).stderr


def test_serve_refuses_a_public_address_without_a_key(config: Path, tmp_path: Path) -> None:
    done = _run("serve", str(config), "--listen", "0.0.0.0", env=_env(tmp_path, "http://x"))
    assert done.returncode == 2
    assert "without an API key" in done.stderr


def test_serve_answers_and_finishes_a_run_in_flight_on_sigterm(
    config: Path, emulator: StartEmulator, tmp_path: Path
) -> None:
    emu = emulator(echo("you said: "), latency=1.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path, emu.url)
    server = subprocess.Popen(
        [str(SCRIPT), "serve", str(config), "--port", str(port), "--grace", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the server did not come up"
            assert server.poll() is None, server.communicate()[1]
            try:
                httpx.get(url + "/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)

        answers: list[httpx.Response] = []
        body = {"messages": [{"role": "user", "content": "hello"}]}
        worker = threading.Thread(
            target=lambda: answers.append(
                httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
            )
        )
        worker.start()
        while not emu.requests or not any(r.path == "/api/generate" for r in emu.requests):
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        worker.join(30)
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait()
    assert answers[0].status_code == 200
    assert answers[0].json()["choices"][0]["message"]["content"] == "you said: hello"
