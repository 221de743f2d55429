"""`python -m bench.engines`: prefill per step of a long conversation on a REAL llama-server.

The server is the one the tests use (`python -m agent.testing llama-server build`, or
`LLAMA_SERVER`), running the tiny Llama 3.1 model the tests write (the real vocabulary, two
layers of random weights; it answers `Hello there` to every native prompt). The same
conversation is played twice through `LlamaCppBackend`, one request per step, each step adding
an answer and a tool result of about `--result-tokens` tokens:

* **stable**: the native prompt of each step extends the previous one byte for byte (the date
  pinned for the run, completions kept verbatim), as `Agent.run` does;
* **unstable**: the same messages, but the date in the system prompt changes at every step, as
  a client that re-renders "today" (or reorders its tools) at every request would: the prompt's
  start differs, so the slot's cache is of no use.

Per step: the prompt's tokens and the tokens the server prefilled (`timings.prompt_n`, i.e.
`Usage.prompt_eval_count`), with the prefill time it reported. The summary is the ratio of
unstable to stable, in tokens and in prefill time, measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

from agent.backends import Done, GenerateOptions, LlamaCppBackend, TextChunk
from agent.llama3 import Message, ToolSpec, render_prompt
from agent.testing._llama_server import find_installed, missing_reason, running_tiny_server

TOOLS = [
    ToolSpec(
        name="lookup",
        description="Look a fact up in the travel guide.",
        parameters={"type": "object", "properties": {"topic": {"type": "string"}}},
    )
]
OPTIONS = GenerateOptions(temperature=0, num_predict=16)


def _result(step: int, words: int) -> str:
    return " ".join(f"fact{step}-{i}" for i in range(words // 3))


async def _play(
    url: str, *, steps: int, result_tokens: int, stable: bool
) -> list[tuple[int, int, float]]:
    """(prompt tokens, prefilled tokens, prefill ms) per step."""
    messages = [
        Message(role="system", content="You are a careful travel assistant."),
        Message(role="user", content="Plan my trip to Lyon, one lookup at a time."),
    ]
    rows: list[tuple[int, int, float]] = []
    async with LlamaCppBackend(url) as backend:
        for step in range(steps):
            # The changing run starts on other days: nothing of the stable run's cache serves it.
            today = dt.date(2026, 1, 1) + dt.timedelta(days=0 if stable else 100 + step)
            prompt = render_prompt(messages, TOOLS, model="llama3.1", today=today)
            pieces: list[str] = []
            done: Done | None = None
            async for event in backend.generate(prompt, model="llama3.1", options=OPTIONS):
                if isinstance(event, TextChunk):
                    pieces.append(event.text)
                else:
                    done = event
            assert done is not None
            usage = done.usage
            prefill_ms = usage.prompt_eval_duration / 1e6
            rows.append((usage.prompt_tokens_sent, usage.prompt_eval_count, prefill_ms))
            messages.append(Message(role="assistant", raw="".join(pieces)))
            messages.append(Message(role="user", content=_result(step, result_tokens)))
    return rows


async def measure(steps: int, result_tokens: int, context: int) -> str:
    installed = find_installed()
    if installed is None:
        raise SystemExit(f"bench.engines: {missing_reason()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-engines-") as scratch,
        running_tiny_server(Path(scratch), installed, context=context) as server,
    ):
        stable = await _play(server.url, steps=steps, result_tokens=result_tokens, stable=True)
        unstable = await _play(server.url, steps=steps, result_tokens=result_tokens, stable=False)
    lines = [
        f"llama-server {installed.server} (tiny Llama 3.1 model, -c {context}, 1 slot); "
        f"{steps} steps, about {result_tokens} new tokens per step",
        "",
        "| step | prompt tokens | prefilled, stable prefix | prefilled, changing prefix "
        "| prefill ms, stable | prefill ms, changing |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for step, (a, b) in enumerate(zip(stable, unstable, strict=True), start=1):
        lines.append(f"| {step} | {a[0]} | {a[1]} | {b[1]} | {a[2]:.1f} | {b[2]:.1f} |")
    tokens_a, tokens_b = sum(r[1] for r in stable), sum(r[1] for r in unstable)
    ms_a, ms_b = sum(r[2] for r in stable), sum(r[2] for r in unstable)
    total = sum(r[0] for r in stable)
    lines += [
        f"| all | {total} | {tokens_a} | {tokens_b} | {ms_a:.0f} | {ms_b:.0f} |",
        "",
        f"prefilled tokens, changing / stable prefix: {tokens_b / tokens_a:.1f}x; "
        f"prefill time: {ms_b / ms_a:.1f}x",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--result-tokens", type=int, default=150)
    parser.add_argument("--context", type=int, default=8192)
    args = parser.parse_args(argv)
    print(anyio.run(measure, args.steps, args.result_tokens, args.context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
