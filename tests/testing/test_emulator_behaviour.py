"""Prompt cache, model reloads, truncation, the scheduler gate, faults and cancellation."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import ollama
import pytest

from agent.llama3 import count_tokens
from agent.testing import (
    Busy,
    DropConnection,
    ErrorLine,
    GarbageLine,
    OllamaEmulator,
    ScriptRequest,
    ServerError,
    Stall,
    answer,
    sequence,
)

pytestmark = pytest.mark.anyio

PROMPT = (
    "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


async def generate(
    http: httpx.AsyncClient, prompt: str, **extra: Any
) -> tuple[int, list[dict[str, Any]]]:
    body = {"model": "llama3.1", "prompt": prompt, "raw": True, **extra}
    response = await http.post("/api/generate", json=body)
    if response.status_code != 200:
        return response.status_code, [response.json()]
    return 200, [json.loads(line) for line in response.text.splitlines()]


async def test_prompt_cache_counts_only_new_tokens() -> None:
    async with OllamaEmulator(answer("Hello.")) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        _, first = await generate(http, PROMPT)
        assert first[-1]["prompt_eval_count"] == 1 + count_tokens(PROMPT)
        follow = "Hello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nMore<|eot_id|>"
        _, second = await generate(http, PROMPT + follow)
        record = emu.completions[-1]
        assert record.cached_tokens == 1 + count_tokens(PROMPT + "Hello.")
        assert second[-1]["prompt_eval_count"] == record.prompt_tokens - record.cached_tokens
        assert second[-1]["prompt_eval_count"] < first[-1]["prompt_eval_count"]
        # The same prompt again: all cached but the last token, which llama.cpp re-evaluates.
        _, third = await generate(http, PROMPT + follow)
        assert third[-1]["prompt_eval_count"] == 1


async def test_changing_num_ctx_reloads_and_clears_the_cache() -> None:
    async with OllamaEmulator(answer("ok")) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        await generate(http, PROMPT, options={"num_ctx": 8192})
        await generate(http, PROMPT, options={"num_ctx": 8192})
        await generate(http, PROMPT, options={"num_ctx": 16384})
        assert [r.reloaded for r in emu.completions] == [True, False, True]
        assert emu.completions[-1].cached_tokens == 0
        ps = (await http.get("/api/ps")).json()["models"]
        assert ps[0]["context_length"] == 16384


async def test_truncation_is_silent_unless_truncate_false() -> None:
    long_prompt = PROMPT + "word " * 400
    async with OllamaEmulator(answer("ok")) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        status, lines = await generate(http, long_prompt, options={"num_ctx": 256})
        assert status == 200
        assert lines[-1]["prompt_eval_count"] == 256  # llamarunner keeps exactly num_ctx
        assert emu.completions[-1].truncated
        status, lines = await generate(http, long_prompt, options={"num_ctx": 256}, truncate=False)
        assert (status, lines) == (400, [{"error": "the input length exceeds the context length"}])
    async with (
        OllamaEmulator(answer("ok"), version="0.30.0") as emu,
        httpx.AsyncClient(base_url=emu.url) as http,
    ):
        _, lines = await generate(http, long_prompt, options={"num_ctx": 256})
        assert lines[-1]["prompt_eval_count"] == 256 - (256 - 5) // 2


async def test_num_predict_and_stop_options() -> None:
    async with (
        OllamaEmulator(answer("one two three four")) as emu,
        httpx.AsyncClient(base_url=emu.url) as http,
    ):
        _, lines = await generate(http, PROMPT, options={"num_predict": 2})
        assert "".join(x.get("response", "") for x in lines) == "one two"
        assert lines[-1]["done_reason"] == "length"
        _, lines = await generate(http, PROMPT, options={"stop": [" three"]})
        assert "".join(x.get("response", "") for x in lines) == "one two"
        assert lines[-1]["done_reason"] == "stop"
        assert emu.completions[-1].options == {"stop": [" three"]}


async def test_async_script_sees_the_request() -> None:
    seen: list[ScriptRequest] = []

    async def script(request: ScriptRequest) -> str:
        seen.append(request)
        await anyio.lowlevel.checkpoint()
        return f"model={request.model} temp={request.options.get('temperature')}"

    async with OllamaEmulator(script) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        _, lines = await generate(http, PROMPT, options={"temperature": 0})
        assert "".join(x.get("response", "") for x in lines) == "model=llama3.1 temp=0"
        assert seen[0].raw
        assert seen[0].prompt == PROMPT
        assert seen[0].last_user == "Hi"


async def test_script_failure_is_a_loud_500() -> None:
    async with OllamaEmulator(sequence()) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        status, lines = await generate(http, PROMPT)
        assert status == 500
        assert "ScriptExhaustedError" in lines[0]["error"]


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        (Busy(), 503, "server busy, please try again.  maximum pending requests exceeded"),
        (ServerError(), 500, ServerError().message),
    ],
)
async def test_status_faults_then_recovery(fault: Any, status: int, error: str) -> None:
    async with (
        OllamaEmulator(answer("ok"), faults=[fault]) as emu,
        httpx.AsyncClient(base_url=emu.url) as http,
    ):
        assert await generate(http, PROMPT) == (status, [{"error": error}])
        code, _ = await generate(http, PROMPT)
        assert code == 200
        assert emu.completions[0].fault == fault
        assert emu.completions[1].fault is None


async def test_error_line_and_garbage_line_in_stream() -> None:
    async with OllamaEmulator(answer("a b c d")) as emu:
        client = ollama.AsyncClient(emu.url)
        emu.inject(ErrorLine(after_chunks=2))
        got: list[str] = []

        async def consume() -> None:
            async for part in await client.generate("llama3.1", PROMPT, raw=True, stream=True):
                got.append(part.response or "")

        with pytest.raises(ollama.ResponseError) as caught:
            await consume()
        assert got == ["a", " b"]
        assert caught.value.status_code == -1
        assert caught.value.error.startswith("an error was encountered while running the model")
        emu.inject(GarbageLine(after_chunks=1))
        with pytest.raises(json.JSONDecodeError):
            [p async for p in await client.generate("llama3.1", PROMPT, raw=True, stream=True)]


async def test_drop_connection_mid_stream_and_before_response() -> None:
    async with OllamaEmulator(answer("a b c d")) as emu:
        client = ollama.AsyncClient(emu.url)
        emu.inject(DropConnection(after_chunks=2))
        got: list[str] = []

        async def consume() -> None:
            async for part in await client.generate("llama3.1", PROMPT, raw=True, stream=True):
                got.append(part.response or "")

        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await consume()
        assert got == ["a", " b"]
        emu.inject(DropConnection(after_chunks=0))
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.generate("llama3.1", PROMPT, raw=True)
        assert (await client.generate("llama3.1", PROMPT, raw=True)).response == "a b c d"


async def test_stall_and_client_cancellation_is_recorded() -> None:
    async with OllamaEmulator(answer("a b"), faults=[Stall(after_chunks=1)]) as emu:
        async with httpx.AsyncClient(base_url=emu.url, timeout=httpx.Timeout(5, read=0.3)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await generate(http, PROMPT)
        with anyio.fail_after(10):
            await emu.wait_idle()
        record = emu.completions[-1]
        assert record.cancelled
        assert not record.finished


async def test_refuse_then_accept_connections() -> None:
    async with OllamaEmulator(answer("ok")) as emu:
        port = emu.port
        await emu.refuse_connections()
        async with httpx.AsyncClient(base_url=emu.url) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("/api/version")
        await emu.accept_connections()
        assert emu.port == port
        async with httpx.AsyncClient(base_url=emu.url) as http:
            assert (await http.get("/api/version")).status_code == 200


async def test_num_parallel_queues_and_max_queue_rejects() -> None:
    release = anyio.Event()

    async def script(request: ScriptRequest) -> str:
        await release.wait()  # hold the only slot until the queue has filled up
        return "ok"

    emulator = OllamaEmulator(script, num_parallel=1, max_queue=1)
    async with emulator as emu, httpx.AsyncClient(base_url=emu.url) as http:
        results: list[int] = []

        async def one() -> None:
            status, _ = await generate(http, PROMPT)
            results.append(status)
            if status == 503:
                release.set()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
        # One runs, one waits in the queue, the third finds the queue full.
        assert sorted(results) == [200, 200, 503]


async def test_recording_is_complete_by_default_and_bounded_on_request() -> None:
    async with OllamaEmulator(answer("ok")) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        for _ in range(30):
            await http.get("/api/version")
        assert len(emu.requests) == 30
    async with (
        OllamaEmulator(answer("ok"), max_records=3) as emu,
        httpx.AsyncClient(base_url=emu.url) as http,
    ):
        for _ in range(5):
            await http.get("/api/version")
        await generate(http, PROMPT, stream=False)
        assert [r.path for r in emu.requests] == ["/api/version"] * 2 + ["/api/generate"]
        assert emu.completions[-1].finished  # the newest record is still updated in place
    with pytest.raises(ValueError, match="max_records"):
        OllamaEmulator(max_records=-1)


async def test_a_request_whose_record_was_dropped_still_gets_its_answer() -> None:
    # A streamed answer outlives its record (here: `max_records=1` and a second request while
    # the first is stalled): updating the dropped record does nothing, nothing else changes.
    async with (
        OllamaEmulator(
            answer("a b"), max_records=1, faults=[Stall(after_chunks=1, seconds=0.3)]
        ) as emu,
        httpx.AsyncClient(base_url=emu.url, timeout=10) as http,
    ):
        async with anyio.create_task_group() as tg:
            results: list[tuple[int, list[dict[str, Any]]]] = []

            async def first() -> None:
                results.append(await generate(http, PROMPT))

            tg.start_soon(first)
            await anyio.sleep(0.1)
            await http.get("/api/version")
        [(status, lines)] = results
        assert status == 200
        assert "".join(line.get("response", "") for line in lines) == "a b"
        assert [r.path for r in emu.requests] == ["/api/version"]
        assert emu.errors == []
