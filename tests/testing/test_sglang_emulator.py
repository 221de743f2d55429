"""`SGLangEmulator` speaks SGLang's native protocol as SGLang's source has it (raw HTTP here,
no backend): the event stream, both streaming modes, stop handling, defaults, errors, faults."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from agent.llama3 import count_tokens
from agent.testing import (
    Busy,
    ErrorLine,
    ServerError,
    SGLangEmulator,
    answer,
    call_tool,
    sequence,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
RAW = {"skip_special_tokens": False}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def generate(
    http: aiohttp.ClientSession, emu: SGLangEmulator, params: dict[str, Any], **body: Any
) -> tuple[int, list[Any]]:
    """POST /generate, streamed; (status, the decoded `data:` payloads, `[DONE]` as a str)."""
    payload = {"text": PROMPT, "sampling_params": params, "stream": True, **body}
    async with http.post(emu.url + "/generate", json=payload) as response:
        raw = await response.read()
        assert response.headers["Content-Type"].startswith(
            "text/event-stream" if response.status == 200 else "application/json"
        )
    if response.status != 200:
        return response.status, [orjson.loads(raw)]
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == ""  # every event ends with a blank line
    events: list[Any] = []
    for block in blocks[:-1]:
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return response.status, events


async def test_the_stream_is_cumulative_and_ends_with_the_matched_stop_token(
    http: aiohttp.ClientSession,
) -> None:
    async with SGLangEmulator(answer("Sunny and warm.")) as emu:
        status, events = await generate(http, emu, RAW)
    assert status == 200
    assert events[-1] == "[DONE]"
    texts = [e["text"] for e in events[:-1]]
    assert texts == ["Sunny", "Sunny and", "Sunny and warm", "Sunny and warm.", "Sunny and warm."]
    last = events[-2]["meta_info"]
    assert last["finish_reason"] == {"type": "stop", "matched": 128009}  # trimmed from the text
    assert last["completion_tokens"] == 5  # the stop token counts
    assert len(events[-2]["output_ids"]) == 5
    assert last["prompt_tokens"] == 1 + count_tokens(PROMPT)  # the BOS SGLang adds
    assert isinstance(last["e2e_latency"], float)
    assert all(e["meta_info"]["finish_reason"] is None for e in events[:-2])


async def test_incremental_streaming_sends_deltas(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("Sunny and warm."), incremental_streaming_output=True) as emu:
        _, events = await generate(http, emu, RAW)
    assert [e["text"] for e in events[:-1]] == ["Sunny", " and", " warm", ".", ""]
    assert [len(e["output_ids"]) for e in events[:-1]] == [1, 1, 1, 1, 1]


async def test_special_tokens_are_skipped_unless_asked(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(call_tool("f", {})) as emu:
        _, skipped = await generate(http, emu, {})
        _, kept = await generate(http, emu, RAW)
    assert skipped[-2]["text"] == '{"name": "f", "parameters": {}}'
    assert kept[-2]["text"] == '<|python_tag|>{"name": "f", "parameters": {}}'
    assert kept[-2]["meta_info"]["finish_reason"]["matched"] == 128008


async def test_max_new_tokens_defaults_to_128_and_wins_over_a_stop_token(
    http: aiohttp.ClientSession,
) -> None:
    async with SGLangEmulator(answer("word " * 200)) as emu:
        _, long = await generate(http, emu, RAW)
        _, exact = await generate(http, emu, {**RAW, "max_new_tokens": 3})
    assert long[-2]["meta_info"]["finish_reason"] == {"type": "length", "length": 128}
    async with SGLangEmulator(answer("a b")) as emu:
        _, at_stop = await generate(http, emu, {**RAW, "max_new_tokens": 3})
    assert exact[-2]["meta_info"]["finish_reason"]["type"] == "length"
    # `Req.check_finished` looks at the length first: the stop token stays in the text.
    assert at_stop[-2]["text"] == "a b<|eot_id|>"
    assert at_stop[-2]["meta_info"]["finish_reason"] == {"type": "length", "length": 3}


async def test_a_stop_string_is_trimmed_only_at_the_end(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("one two three four")) as emu:
        _, events = await generate(http, emu, {**RAW, "stop": [" three"]})
    texts = [e["text"] for e in events[:-1]]
    assert texts == ["one", "one two", "one two"]
    assert events[-2]["meta_info"]["finish_reason"] == {"type": "stop", "matched": " three"}


async def test_a_prompt_with_its_own_bos_gets_two(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("ok")) as emu:
        await generate(http, emu, RAW)
        await generate(http, emu, RAW, text="<|begin_of_text|>" + PROMPT)
    once, twice = emu.completions
    assert twice.prompt_tokens == once.prompt_tokens + 1


async def test_context_errors_are_in_band_once_streaming(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("ok"), context_length=20) as emu:
        _, too_long = await generate(http, emu, RAW, text=PROMPT + "word " * 30)
        _, no_room = await generate(http, emu, {**RAW, "max_new_tokens": 15})
        status, whole = await generate(http, emu, {**RAW, "max_new_tokens": 15}, stream=False)
    assert too_long[0]["error"]["message"].endswith("context length (20 tokens).")
    assert too_long[1] == "[DONE]"
    assert "You requested a total of" in no_room[0]["error"]["message"]
    assert status == 400
    assert "exceeds the model's maximum context length of 20" in whole[0]["error"]["message"]


async def test_a_prompt_past_the_kv_pool_is_aborted(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("ok"), max_total_num_tokens=10) as emu:
        _, events = await generate(http, emu, RAW)
    finish = events[0]["meta_info"]["finish_reason"]
    assert finish["type"] == "abort"
    assert finish["status_code"] == 400
    assert "exceeds the maximum allowed length (9 tokens)" in finish["message"]


async def test_unknown_sampling_params_are_refused(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(answer("ok")) as emu:
        _, events = await generate(http, emu, {"num_predict": 5})
    assert "unexpected keyword argument 'num_predict'" in events[0]["error"]["message"]


async def test_the_radix_cache_reports_cached_tokens(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(sequence("First.", "Second.")) as emu:
        await generate(http, emu, RAW)
        follow = PROMPT + "First.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd?"
        _, events = await generate(http, emu, RAW, text=follow)
    first = emu.completions[0]
    assert first.cached_tokens == 0
    # The first prompt and its answer; the stop token was never forwarded, so it is not held.
    assert events[-2]["meta_info"]["cached_tokens"] == first.prompt_tokens + 2


async def test_info_endpoints_and_their_old_names(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(served_model_name="llama", context_length=8192) as emu:
        for path in ("/model_info", "/get_model_info"):
            async with http.get(emu.url + path) as response:
                assert (await response.json())["model_path"] == "meta-llama/Llama-3.1-8B-Instruct"
        async with http.get(emu.url + "/server_info") as response:
            info = await response.json()
        async with http.get(emu.url + "/v1/models") as response:
            card = (await response.json())["data"][0]
        async with http.post(emu.url + "/tokenize", json={"prompt": PROMPT}) as response:
            tokenized = await response.json()
    assert info["version"] == emu.version
    assert info["max_req_input_len"] == 8191
    assert (card["id"], card["max_model_len"]) == ("llama", 8192)
    assert tokenized["count"] == 1 + count_tokens(PROMPT)
    async with SGLangEmulator(legacy_endpoints=True, tokenize_endpoint=False) as emu:
        for path, status in (("/model_info", 404), ("/get_server_info", 200)):
            async with http.get(emu.url + path) as response:
                assert response.status == status
        async with http.post(emu.url + "/tokenize", json={"prompt": "x"}) as response:
            assert response.status == 404


async def test_the_api_key_guards_all_but_health(http: aiohttp.ClientSession) -> None:
    async with SGLangEmulator(api_key="k") as emu:
        async with http.get(emu.url + "/health") as response:
            assert response.status == 200
        async with http.get(emu.url + "/v1/models") as response:
            assert (response.status, await response.json()) == (401, {"error": "Unauthorized"})
        headers = {"Authorization": "Bearer k"}
        async with http.get(emu.url + "/v1/models", headers=headers) as response:
            assert response.status == 200


async def test_faults(http: aiohttp.ClientSession) -> None:
    faults = [Busy(), ServerError(status=503, message="overloaded"), ErrorLine(after_chunks=1)]
    async with SGLangEmulator(answer("a b c"), faults=faults) as emu:
        _, busy = await generate(http, emu, RAW)
        status, error = await generate(http, emu, RAW)
        _, aborted = await generate(http, emu, RAW)
        _, fine = await generate(http, emu, RAW)
    assert busy[0]["meta_info"]["finish_reason"]["status_code"] == 503
    assert busy[0]["meta_info"]["finish_reason"]["message"] == "The request queue is full."
    assert (status, error[0]["message"]) == (503, "overloaded")
    assert [e["text"] for e in aborted[:-1]] == ["a", "a"]
    assert aborted[1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert fine[-2]["text"] == "a b c"
    assert [r.fault is not None for r in emu.completions] == [True, True, True, False]


@pytest.mark.timeout(60)
def test_serve_engine_sglang_runs_the_sglang_emulator_as_a_process() -> None:
    command = [sys.executable, "-m", "agent.testing", "serve", "--engine", "sglang"]
    process = subprocess.Popen([*command, "--reply", "Pong."], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        response = httpx.post(
            f"{url}/generate", json={"text": PROMPT, "sampling_params": RAW}, timeout=30
        )
        assert response.json()["text"] == "Pong."
    finally:
        process.terminate()
        process.wait(timeout=30)
