"""What SGLang's cumulative stream costs the client (docs/engines.md (SGLang), "The stream").

By default every `/generate` event carries the whole completion so far (`text` and
`output_ids`), so an answer of n tokens sends O(n²) bytes and the client parses them all;
`--incremental-streaming-output` sends deltas. This streams answers of several lengths through
`SGLangBackend` from `SGLangEmulator` (in a thread of its own) in both modes, and prints the
bytes on the wire and the client's CPU time (its thread only), with the incremental mode as the
baseline measured in the same run.

Run: `python bench/bench_sglang_stream.py [--tokens 500 2000 8000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import time

import aiohttp
import anyio

from agent.backends import GenerateOptions, SGLangBackend
from agent.testing import SGLangEmulator, answer

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWrite.<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def wire_bytes(url: str, tokens: int) -> int:
    body = {
        "text": PROMPT.removeprefix("<|begin_of_text|>"),
        "sampling_params": {"max_new_tokens": tokens + 8, "skip_special_tokens": False},
        "stream": True,
    }
    async with aiohttp.ClientSession() as session, session.post(url + "/generate", json=body) as r:
        return len(await r.read())


async def client_seconds(url: str, tokens: int, repeat: int) -> float:
    """The best of `repeat` runs: CPU seconds of this thread to stream one answer."""
    best = float("inf")
    async with SGLangBackend(url) as backend:
        await backend.model_info(MODEL)
        for _ in range(repeat):
            started = time.thread_time()
            options = GenerateOptions(num_predict=tokens + 8)
            async for _event in backend.generate(PROMPT, model=MODEL, options=options):
                pass
            best = min(best, time.thread_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'tokens':>7} {'mode':>12} {'wire KB':>9} {'client ms':>10} {'× incremental':>14}")
    for tokens in args.tokens:
        script = answer("word " * tokens)
        results = {}
        for incremental in (True, False):
            emulator = SGLangEmulator(script, incremental_streaming_output=incremental)
            with emulator.start_in_thread() as emu:
                size = anyio.run(wire_bytes, emu.url, tokens)
                seconds = anyio.run(client_seconds, emu.url, tokens, args.repeat)
            results[incremental] = (size, seconds)
        base_size, base_seconds = results[True]
        for incremental in (True, False):
            size, seconds = results[incremental]
            mode = "incremental" if incremental else "cumulative"
            ratio = f"{size / base_size:.1f} B, {seconds / base_seconds:.1f} CPU"
            print(f"{tokens:>7} {mode:>12} {size / 1024:>9.0f} {seconds * 1000:>10.1f} {ratio:>14}")


if __name__ == "__main__":
    main()
