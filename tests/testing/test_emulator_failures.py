"""The emulator fails loudly, and its prompt cache holds only what a cut-off stream generated."""

from __future__ import annotations

import contextlib

import anyio
import httpx
import ollama
import pytest

from agent.testing import DropConnection, OllamaEmulator, answer

pytestmark = pytest.mark.anyio

PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
BODY = {"model": "llama3.1", "prompt": PROMPT, "raw": True}


def broken_count(text: str) -> int:
    raise ZeroDivisionError("a bug inside the emulator")


async def crash_a_handler(emu: OllamaEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.url) as http:
        with pytest.raises(httpx.RemoteProtocolError):  # the connection closes, no answer
            await http.post("/api/generate", json=BODY)


async def test_a_handler_bug_is_raised_when_the_emulator_stops() -> None:
    with pytest.raises(ExceptionGroup) as caught:
        async with OllamaEmulator(answer("ok"), count_tokens=broken_count) as emu:
            await crash_a_handler(emu)
    assert "emulator failed inside 1 request handler" in str(caught.value)
    assert [type(e) for e in caught.value.exceptions] == [ZeroDivisionError]


async def test_a_handler_bug_is_noted_on_an_error_already_raised() -> None:
    async def a_failing_test() -> None:
        async with OllamaEmulator(answer("ok"), count_tokens=broken_count) as emu:
            await crash_a_handler(emu)
            raise KeyError("the test's own failure")

    with pytest.raises(KeyError) as caught:
        await a_failing_test()
    assert "ZeroDivisionError: a bug inside the emulator" in caught.value.__notes__[0]


async def test_raising_handler_bugs_can_be_turned_off() -> None:
    async with OllamaEmulator(answer("ok"), count_tokens=broken_count, raise_errors=False) as emu:
        await crash_a_handler(emu)
    assert [type(e) for e in emu.errors] == [ZeroDivisionError]


async def test_a_dropped_stream_caches_only_what_was_sent() -> None:
    async with OllamaEmulator(answer("one two three four")) as emu:
        emu.inject(DropConnection(after_chunks=2))
        client = ollama.AsyncClient(emu.url)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            [p async for p in await client.generate("llama3.1", PROMPT, raw=True, stream=True)]
        assert emu.cache["llama3.1:latest"] == PROMPT + "one two"
        # A follow-up that repeats the whole answer finds only the part that was generated.
        await client.generate("llama3.1", PROMPT + "one two three four", raw=True)
        record = emu.completions[-1]
        assert record.prompt_eval_count == record.prompt_tokens - record.cached_tokens
        assert record.prompt_eval_count >= 2  # " three four" had to be evaluated
        assert emu.cache["llama3.1:latest"].startswith(PROMPT + "one two three four")


async def test_a_stream_the_client_leaves_caches_only_what_was_sent() -> None:
    async with OllamaEmulator(answer("one two three four"), token_rate=20) as emu:
        client = ollama.AsyncClient(emu.url)
        stream = await client.generate("llama3.1", PROMPT, raw=True, stream=True)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for part in stream:
                assert part.response == "one"
                break
        with anyio.fail_after(10):
            await emu.wait_idle()
        assert emu.completions[-1].cancelled
        assert emu.cache["llama3.1:latest"] in (PROMPT + "one", PROMPT + "one two")


async def test_a_finished_stream_caches_prompt_and_completion() -> None:
    async with OllamaEmulator(answer("one two")) as emu:
        await ollama.AsyncClient(emu.url).generate("llama3.1", PROMPT, raw=True)
        assert emu.cache["llama3.1:latest"] == PROMPT + "one two"
