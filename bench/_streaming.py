"""Section 4: from a chunk's arrival at the client to the caller's `TextDelta`.

The emulator (its own process) streams a prose answer one token per chunk at a steady rate.
Two clocks, both non-invasive:

* wire: the backend's line reader (`_stream.Lines.batch`) is wrapped to stamp each batch of
  lines as a read hands it over (before the backend decodes them);
* backend: a `Backend` around `OllamaBackend` stamps each `TextChunk` as the backend yields it
  (what the loop itself adds).

The caller stamps each `TextDelta`. A delta is matched with the chunk that brought its last
character. Runs one stream at a time, then many at once (latency under load).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from agent import Agent, TextDelta
from agent.backends import (
    Backend,
    GenerateEvent,
    GenerateOptions,
    ModelInfo,
    OllamaBackend,
    TextChunk,
)
from agent.backends._wire import Lines
from bench._common import SectionResult, Table, emulator_process, percentile, us

WORDS = (
    "Lyon sits where the Rhone meets the Saone, and its old town keeps Renaissance courtyards "
    "linked by covered passages called traboules. The bakeries open early; the markets along "
    "the quays sell cheese, fruit and bread until noon. A day there starts with coffee and "
    "ends with dinner in a bouchon, where the food is rich and the wine is local."
)


@dataclass
class _Log:
    """What one run saw: raw body reads, backend chunks, and the caller's deltas."""

    wire: list[tuple[float, bytes]] = field(default_factory=list)
    chunks: list[tuple[float, str]] = field(default_factory=list)
    deltas: list[tuple[float, str]] = field(default_factory=list)


_CURRENT: contextvars.ContextVar[_Log] = contextvars.ContextVar("bench_stream_log")


@contextlib.contextmanager
def stamping_reads() -> Iterator[None]:
    """Stamp every batch of lines the backend reads into the current run's log."""
    original = Lines.batch

    async def batch(self: Lines) -> list[bytes]:
        lines = await original(self)
        log = _CURRENT.get(None)
        if log is not None and lines:
            log.wire.append((time.perf_counter(), b"".join(x + b"\n" for x in lines)))
        return lines

    Lines.batch = batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        Lines.batch = original  # type: ignore[method-assign]


class StampingBackend(Backend):
    """Passes everything through, stamping each `TextChunk` as it leaves the inner backend."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    async def generate(
        self, prompt: str, *, model: str, options: GenerateOptions
    ) -> AsyncIterator[GenerateEvent]:
        log = _CURRENT.get(None)
        events = self._inner.generate(prompt, model=model, options=options)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if log is not None and isinstance(event, TextChunk):
                    log.chunks.append((time.perf_counter(), event.text))
                yield event

    async def model_info(self, model: str) -> ModelInfo:
        return await self._inner.model_info(model)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _wire_chunks(wire: list[tuple[float, bytes]]) -> list[tuple[float, str]]:
    """(arrival of the read that completed the line, its text) for each non-empty chunk."""
    out: list[tuple[float, str]] = []
    pending = b""
    for stamp, data in wire:
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            text = json.loads(line).get("response", "") if line.strip() else ""
            if text:
                out.append((stamp, text))
    return out


def _latencies(chunks: list[tuple[float, str]], deltas: list[tuple[float, str]]) -> list[float]:
    """For each delta: its arrival minus the arrival of the chunk holding its last character."""
    ends: list[int] = []
    position = 0
    for _, text in chunks:
        position += len(text)
        ends.append(position)
    full = "".join(text for _, text in chunks)
    offset = len(full) - len(full.lstrip())  # the answer's leading whitespace is never shown
    out = []
    shown = offset
    index = 0
    for stamp, text in deltas:
        shown += len(text)
        while index < len(ends) - 1 and ends[index] < shown:
            index += 1
        out.append(stamp - chunks[index][0])
    return out


async def _one(agent: Agent, logs: list[_Log]) -> None:
    log = _Log()
    token = _CURRENT.set(log)
    try:
        async with agent.stream("Tell me about Lyon.") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    log.deltas.append((time.perf_counter(), event.text))
    finally:
        _CURRENT.reset(token)
    if "".join(t for _, t in log.deltas) != WORDS:
        raise AssertionError("the streamed answer is not the emulator's text")
    logs.append(log)


async def _measure(url: str, *, runs: int, concurrent: int) -> list[_Log]:
    backend = StampingBackend(OllamaBackend(url))
    logs: list[_Log] = []
    with stamping_reads():
        async with Agent("llama3.1", backend=backend) as agent:
            await _one(agent, [])  # warm up
            for _ in range(runs):
                async with anyio.create_task_group() as group:
                    for _ in range(concurrent):
                        group.start_soon(_one, agent, logs)
    await backend.aclose()
    return logs


def _summary(logs: list[_Log]) -> dict[str, Any]:
    wire: list[float] = []
    loop: list[float] = []
    for log in logs:
        wire += _latencies(_wire_chunks(log.wire), log.deltas)
        loop += _latencies(log.chunks, log.deltas)
    return {
        "samples": len(wire),
        "wire_p50": percentile(wire, 50),
        "wire_p99": percentile(wire, 99),
        "loop_p50": percentile(loop, 50),
        "loop_p99": percentile(loop, 99),
    }


def run(*, quick: bool) -> SectionResult:
    # (streams at once, tokens per second each, rounds)
    cases = [(1, 500.0, 1), (5, 200.0, 1)] if quick else [(1, 200.0, 25), (100, 20.0, 1)]
    rows = []
    data: dict[str, Any] = {}
    for concurrent, rate, runs in cases:
        label = f"{concurrent} stream{'s' if concurrent > 1 else ''}, {rate:.0f} tokens/s each"
        with emulator_process("--reply", WORDS, "--token-rate", str(rate)) as emulator:
            measure = functools.partial(_measure, emulator.url, runs=runs, concurrent=concurrent)
            logs = anyio.run(measure)
        summary = _summary(logs)
        data[label] = summary
        rows.append(
            [
                label,
                str(summary["samples"]),
                us(summary["wire_p50"]),
                us(summary["wire_p99"]),
                us(summary["loop_p50"]),
                us(summary["loop_p99"]),
            ]
        )
    table = Table(
        title="Chunk arrival to the caller's TextDelta",
        headers=[
            "case",
            "deltas",
            "wire p50",
            "wire p99",
            "backend→delta p50",
            "backend→delta p99",
        ],
        rows=rows,
    )
    result = SectionResult(key="streaming", title="4. Streaming", tables=[table], data=data)
    result.notes.append(
        "wire: from aiohttp handing over the bytes of a chunk's line (before the `ollama` "
        "client parses it) to the caller's event; backend→delta: from the backend yielding "
        "the `TextChunk` to the caller's event (the loop's own part)."
    )
    return result
