"""Section 6: what `llama-agent serve` adds over `Agent.run`, at 100 and 1,000 concurrent clients.

The emulator (one-step answers, fixed latency) runs in a child process. The baseline is N
concurrent `Agent.run` calls in this process; the served case is an `AgentServer` on uvicorn in
a second child process, with N concurrent non-streamed `/v1/chat/completions` requests from
this one (aiohttp, one connection each). Everything stays on 127.0.0.1 and every request loop is
bounded by its count. Latency added is the served median minus the direct median.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

from bench._common import ROOT, SectionResult, Table, child_env, emulator_process, median, ms
from bench._common import percentile as pct

LATENCY = 0.2
QUICK_LATENCY = 0.05
SIZES = (100, 1000)
QUICK_SIZES = (5,)
MODEL = "llama3.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_main(argv: list[str]) -> int:
    """`python -m bench._serve URL PORT`: serve an agent on the emulator at URL."""
    import anyio

    from agent import Agent
    from agent.server import AgentServer, serve

    url, port = argv[0], int(argv[1])

    async def main() -> None:
        async with Agent(MODEL, host=url) as agent:  # the default pool, as a user's would be
            await serve(AgentServer(agent, grace=1), port=port, log_level="warning")

    anyio.run(main)
    return 0


async def _direct(url: str, clients: int) -> tuple[float, list[float], int]:
    import anyio

    from agent import Agent
    from agent.errors import RunError

    latencies: list[float] = []
    failed = 0
    async with Agent(MODEL, host=url) as agent:  # the default connection pool, as served
        await agent.run("warm up")

        async def one(i: int) -> None:
            nonlocal failed
            started = time.perf_counter()
            try:
                await agent.run(f"hello {i}")
            except RunError:  # a connect timeout on a loaded machine: counted, not timed
                failed += 1
                return
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for i in range(clients):
                group.start_soon(one, i)
        wall = time.perf_counter() - started
    return wall, latencies, failed


async def _served(url: str, clients: int) -> tuple[float, list[float], int]:
    import aiohttp
    import anyio

    latencies: list[float] = []
    failed = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal failed
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"hello {i}"}]}
            started = time.perf_counter()
            async with session.post(url + "/v1/chat/completions", json=body) as response:
                await response.read()
            if response.status != 200:  # the server's run failed (a 502): counted, not timed
                failed += 1
                return
            latencies.append(time.perf_counter() - started)

        await one(-1)  # warm up
        latencies.clear()
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for i in range(clients):
                group.start_soon(one, i)
        wall = time.perf_counter() - started
    return wall, latencies, failed


def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the served agent exited at start")
        try:
            httpx.get(url + "/v1/models", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the served agent did not come up")


def run(*, quick: bool) -> SectionResult:
    import anyio

    latency = QUICK_LATENCY if quick else LATENCY
    sizes = QUICK_SIZES if quick else SIZES
    rows: list[dict[str, Any]] = []
    with emulator_process("--echo", "--latency", str(latency), "--max-records", "10") as emu:
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench._serve", emu.url, str(port)], env=child_env(), cwd=ROOT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, server)
            for clients in sizes:
                for case, measure in (("Agent.run", _direct), ("served", _served)):
                    target = emu.url if case == "Agent.run" else url
                    wall, samples, failed = anyio.run(measure, target, clients)
                    rows.append(
                        {
                            "case": case,
                            "clients": clients,
                            "wall": wall,
                            "rps": (clients - failed) / wall,
                            "p50": median(samples),
                            "p99": pct(samples, 99),
                            "failed": failed,
                        }
                    )
        finally:
            server.terminate()
            server.wait(30)
    table_rows = []
    for row in rows:
        base = next(r for r in rows if r["clients"] == row["clients"] and r["case"] == "Agent.run")
        added = row["p50"] - base["p50"] if row["case"] == "served" else 0.0
        table_rows.append(
            [
                row["case"],
                str(row["clients"]),
                f"{row['rps']:.0f}",
                ms(row["p50"], 1),
                ms(row["p99"], 1),
                ms(added, 1) if row["case"] == "served" else "",
                str(row["failed"]),
            ]
        )
    return SectionResult(
        key="serve",
        title="6. Serving: `llama-agent serve` against `Agent.run`",
        tables=[
            Table(
                title=f"one-step answers, {latency * 1000:.0f} ms per model request",
                headers=["case", "clients", "requests/s", "p50", "p99", "p50 added", "failed"],
                rows=table_rows,
            )
        ],
        notes=[
            "Served: non-streamed /v1/chat/completions over loopback, uvicorn in its own "
            "process; clients and the direct baseline share this process with nothing else. "
            "`failed`: requests whose run failed (on a loaded 2-core machine, a connect timeout "
            "to the emulator at 1,000 clients); they are not in the latencies."
        ],
        data={"rows": rows, "latency": latency},
    )


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
