"""The examples run the way their docstrings say, `python examples/x.py`, and find the model at
`OLLAMA_HOST` (here the emulator, on a thread)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx

from agent.testing import OllamaEmulator, ScriptRequest, tool_call_text

from .conftest import EXAMPLES


def model(request: ScriptRequest) -> str:
    """Calls the example's tool on the user's question, then reports the tool's result."""
    if request.tool_results:
        return f"Result: {request.tool_results[-1]}<|eot_id|>"
    if '"name": "check_stock"' in request.prompt:
        return tool_call_text("check_stock", {"sku": "mug"})
    question = re.search(r"What is (.+)\?", request.last_user)
    assert question is not None, request.last_user
    return tool_call_text("calculate", {"expression": question[1]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(script: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_example_scripts_run_against_ollama_host() -> None:
    port = free_port()
    with OllamaEmulator(model).start_in_thread() as emu:
        env = {**os.environ, "OLLAMA_HOST": emu.url, "PORT": str(port)}
        # All three at once: each takes a second or so to start.
        shop = start("custom_tools.py", "Two mugs to Paris, please.", env=env)
        jobs = start("embedding.py", "What is 2**64?", "What is 6*7?", env=env)
        service = start("service.py", env=env)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        response = client.get("/runs/stream", params={"task": "What is 17*23?"})
                        break
                    except httpx.ConnectError:
                        assert service.poll() is None, service.communicate()
                        assert time.monotonic() < deadline, "the service did not start"
                        time.sleep(0.1)
            shop_out, shop_err = shop.communicate(timeout=60)
            jobs_out, jobs_err = jobs.communicate(timeout=60)
        finally:
            for process in (shop, jobs, service):
                process.kill()
                process.wait(timeout=30)

    assert shop.returncode == 0, shop_err
    assert shop_out == "Result: 12 mug(s) in stock\n"
    assert "-> check_stock({'sku': 'mug'})" in shop_err

    assert jobs.returncode == 0, jobs_err
    assert [line.strip() for line in jobs_out.splitlines()] == [
        "answered  What is 2**64?",
        "Result: 18446744073709551616",
        "answered  What is 6*7?",
        "Result: 42",
    ]

    assert response.status_code == 200
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: run_finished\ndata: ")
    result = json.loads(last.split("data: ", 1)[1])["result"]
    assert result["answer"] == "Result: 391"
