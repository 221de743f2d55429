"""How the HTTP client scales with concurrent runs (DESIGN decision 9).

200 concurrent runs, each making 5 streamed raw `generate` calls in a row, against the Ollama
emulator running in its own process with 200 ms latency before the first token and 5 tokens at
100 tokens/s after it (240 ms per call). The ideal wall time is 5 × 0.24 s = 1.2 s.

Clients compared:
* `ollama.AsyncClient` on its default httpx transport (httpcore's pool);
* `OllamaBackend` (what the product uses: aiohttp directly with a sized pool, plus its
  token counting, context sizing and stream handling);
* a bare aiohttp client reading NDJSON lines (the floor).

Run: `python bench/bench_client.py [--runs 200] [--calls 5] [--latency 0.2]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import ollama

from agent.backends import GenerateOptions, OllamaBackend

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSay hello.<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
REPLY = "Hello there, friend!"  # 5 token-like pieces
TOKEN_RATE = 100.0


async def run_all(runs: int, calls: int, one_call: Callable[[], Awaitable[str]]) -> float:
    async def one_run() -> None:
        for _ in range(calls):
            text = await one_call()
            assert text == REPLY, text

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(one_run)
    return time.perf_counter() - started


async def with_ollama_client(url: str, runs: int, calls: int) -> float:
    client = ollama.AsyncClient(url)

    async def call() -> str:
        parts = []
        async for part in await client.generate(
            "llama3.1", PROMPT.removeprefix("<|begin_of_text|>"), raw=True, stream=True
        ):
            parts.append(part.response or "")
        return "".join(parts)

    try:
        return await run_all(runs, calls, call)
    finally:
        await client._client.aclose()


async def with_backend(url: str, runs: int, calls: int) -> float:
    async with OllamaBackend(url) as backend:
        await backend.model_info("llama3.1")  # asked once per model, outside the timing

        async def call() -> str:
            parts = []
            async for event in backend.generate(
                PROMPT, model="llama3.1", options=GenerateOptions()
            ):
                if hasattr(event, "text"):
                    parts.append(event.text)
            return "".join(parts)

        return await run_all(runs, calls, call)


async def with_bare_aiohttp(url: str, runs: int, calls: int) -> float:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> str:
            body = {
                "model": "llama3.1",
                "prompt": PROMPT.removeprefix("<|begin_of_text|>"),
                "raw": True,
                "stream": True,
            }
            parts = []
            async with session.post(f"{url}/api/generate", json=body) as response:
                async for line in response.content:
                    parts.append(json.loads(line).get("response", ""))
            return "".join(parts)

        return await run_all(runs, calls, call)


def start_emulator(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.testing",
            "serve",
            "--reply",
            REPLY,
            "--latency",
            str(latency),
            "--token-rate",
            str(TOKEN_RATE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if not first.startswith("listening on "):
        process.kill()
        raise SystemExit(f"the emulator did not start: {first!r}")
    return process, first.removeprefix("listening on ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--only", choices=["httpx", "backend", "aiohttp"])
    args = parser.parse_args()
    ideal = args.calls * (args.latency + 4 / TOKEN_RATE)
    process, url = start_emulator(args.latency)
    try:
        cases: dict[str, Callable[[], Awaitable[float]]] = {
            "httpx": lambda: with_ollama_client(url, args.runs, args.calls),
            "backend": lambda: with_backend(url, args.runs, args.calls),
            "aiohttp": lambda: with_bare_aiohttp(url, args.runs, args.calls),
        }
        labels = {
            "httpx": "ollama.AsyncClient, default httpx transport",
            "backend": "OllamaBackend (aiohttp, 512 connections)",
            "aiohttp": "bare aiohttp, no connection cap",
        }
        print(
            f"{args.runs} runs x {args.calls} calls, {args.latency * 1000:.0f} ms latency; "
            f"ideal {ideal:.2f} s"
        )
        for name, case in cases.items():
            if args.only and name != args.only:
                continue
            wall = anyio.run(case)
            print(f"{labels[name]:<58} {wall:6.2f} s  {wall / ideal:5.2f}x ideal", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
