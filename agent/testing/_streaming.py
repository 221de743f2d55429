"""Writing a completion the way Ollama does: NDJSON lines, timings, and injected faults."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from agent.testing._faults import DropConnection, ErrorLine, Fault, GarbageLine, Stall
from agent.testing._http import Responder

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

NDJSON = "application/x-ndjson"


def created_at() -> str:
    """RFC 3339 with sub-second precision and trailing zeros trimmed, as Go prints it."""
    text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return f"{text}Z"


def line(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass
class Progress:
    """How much of a response got out (mutable: `send` advances it as it writes)."""

    chunks: int = 0  # non-final lines written
    complete: bool = False  # the final line (or the whole answer) written


class _Stream:
    """One streamed response: lazily started, faults applied at their chunk position."""

    def __init__(
        self, emu: OllamaEmulator, index: int, responder: Responder, fault: Fault | None
    ) -> None:
        self.emu = emu
        self.index = index
        self.responder = responder
        self.fault = fault

    async def write(self, payload: bytes, *, end: bool = False) -> None:
        if not self.responder.started:
            await self.responder.start(200, NDJSON)
        await self.responder.write(payload, end=end)

    async def fault_at(self, position: int, *, last: bool) -> bool:
        """Apply the fault due at `position`; True when the stream is over."""
        fault = self.fault
        after = getattr(fault, "after_chunks", None)
        if fault is None or after is None or not (after == position or (last and after > position)):
            return False
        if isinstance(fault, Stall):
            await _stall(fault)
        elif isinstance(fault, GarbageLine):
            await self.write(fault.line.encode() + b"\n")
        elif isinstance(fault, ErrorLine):
            self.emu.update(self.index, error=fault.message, finished=True)
            await self.write(line({"error": fault.message}), end=True)
            return True
        elif isinstance(fault, DropConnection):
            self.emu.update(self.index, error="connection dropped (fault)", finished=True)
            if self.responder.started:
                await self.responder.abort(b'{"model":"')
            else:
                await self.responder.hang_up()
            return True
        return False


async def _stall(fault: Stall) -> None:
    if fault.seconds is None:
        await anyio.sleep_forever()
    else:
        await anyio.sleep(fault.seconds)


def _metrics(
    timing: Mapping[str, int], counts: tuple[int, int], prompt_ns: int, eval_ns: int
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "total_duration": time.perf_counter_ns() - timing["started"],
        "load_duration": timing["load"],
    }
    # Go's `omitempty`: a zero count is left out.
    if counts[0]:
        metrics["prompt_eval_count"] = counts[0]
    metrics["prompt_eval_duration"] = prompt_ns
    if counts[1]:
        metrics["eval_count"] = counts[1]
    metrics["eval_duration"] = eval_ns
    return metrics


async def send(
    emu: OllamaEmulator,
    index: int,
    responder: Responder,
    *,
    endpoint: Literal["generate", "chat"],
    base: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]],
    final: Mapping[str, Any],
    final_content: str,
    stream: bool,
    fault: Fault | None,
    timing: Mapping[str, int],
    counts: tuple[int, int],
    completion: str,
    tool_calls: Sequence[Mapping[str, Any]],
    progress: Progress,
) -> None:
    """Send the completion: streamed lines then the final one, or one JSON object."""
    interval = 1.0 / emu.token_rate if emu.token_rate else 0.0
    out = _Stream(emu, index, responder, fault)
    prompt_start = time.perf_counter_ns()
    await anyio.sleep(emu.latency)  # prompt evaluation: nothing is sent before the first token
    prompt_ns = max(time.perf_counter_ns() - prompt_start, 1)
    eval_start = time.perf_counter_ns()
    record = {
        "prompt_eval_count": counts[0],
        "eval_count": counts[1],
        "completion": completion,
        "done_reason": final["done_reason"],
        "tool_calls": tuple(tool_calls),
    }
    if not stream:
        await anyio.sleep(interval * max(len(chunks) - 1, 0))
        progress.complete = await _whole(
            emu,
            index,
            out,
            endpoint,
            base,
            final,
            final_content,
            completion,
            tool_calls,
            timing,
            counts,
            prompt_ns,
            eval_start,
            record,
        )
        return
    for position, payload in enumerate(chunks):
        if position:
            await anyio.sleep(interval)
        if await out.fault_at(position, last=False):
            return
        await out.write(line({**base, "created_at": created_at(), **payload, "done": False}))
        progress.chunks += 1
    if await out.fault_at(len(chunks), last=True):
        return
    eval_ns = max(time.perf_counter_ns() - eval_start, 1)
    last: dict[str, Any] = {**base, "created_at": created_at()}
    if endpoint == "chat":
        last["message"] = {"role": "assistant", "content": final_content}
    else:
        last["response"] = ""
    last.update(final)
    last.update(_metrics(timing, counts, prompt_ns, eval_ns))
    emu.update(index, finished=True, **record)
    await out.write(line(last), end=True)
    progress.complete = True


async def _whole(
    emu: OllamaEmulator,
    index: int,
    out: _Stream,
    endpoint: str,
    base: Mapping[str, Any],
    final: Mapping[str, Any],
    final_content: str,
    completion: str,
    tool_calls: Sequence[Mapping[str, Any]],
    timing: Mapping[str, int],
    counts: tuple[int, int],
    prompt_ns: int,
    eval_start: int,
    record: dict[str, Any],
) -> bool:
    """The answer as one JSON object (or the fault instead); True when the answer went out."""
    fault = out.fault
    if isinstance(fault, Stall):
        await _stall(fault)
    elif isinstance(fault, DropConnection):
        emu.update(index, error="connection dropped (fault)", finished=True)
        await out.responder.hang_up()
        return False
    elif isinstance(fault, ErrorLine):
        emu.update(index, status=500, error=fault.message, finished=True)
        await out.responder.json(500, {"error": fault.message})
        return False
    elif isinstance(fault, GarbageLine):
        emu.update(index, error="garbage body (fault)", finished=True)
        await out.responder.respond(200, "application/json; charset=utf-8", fault.line.encode())
        return False
    payload: dict[str, Any] = {**base, "created_at": created_at()}
    if endpoint == "chat":
        content = final_content or ("" if tool_calls else completion)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = list(tool_calls)
        payload["message"] = message
    else:
        payload["response"] = completion
    payload.update(final)
    payload.update(_metrics(timing, counts, prompt_ns, max(time.perf_counter_ns() - eval_start, 1)))
    emu.update(index, finished=True, **record)
    await out.responder.json(200, payload)
    return True
