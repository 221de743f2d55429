"""`LlamaCppEmulator` on the wire, as a raw HTTP client sees it (llama-server's shapes)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
import httpx
import pytest

from agent.testing import Busy, LlamaCppEmulator, answer, call_tool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


async def stream(url: str, body: dict[str, Any]) -> tuple[int, list[bytes]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/completion", json=body) as response,
    ):
        raw = await response.read()
    return response.status, raw.split(b"\n")


def events(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line[len(b"data: ") :]) for line in lines if line.startswith(b"data: ")]


async def test_a_stream_is_sse_one_token_per_event_then_a_final_event() -> None:
    async with LlamaCppEmulator(answer("Hi there")) as emu:
        status, lines = await stream(emu.url, {"prompt": PROMPT, "n_predict": 10, "stream": True})
    assert status == 200
    assert b"data: [DONE]" not in lines  # only the OpenAI routes end with it
    assert all(line == b"" or line.startswith(b"data: ") for line in lines)
    *partials, final = events(lines)
    assert [(e["content"], len(e["tokens"]), e["stop"]) for e in partials] == [
        ("Hi", 1, False),
        (" there", 1, False),
        ("", 1, False),  # <|eot_id|>, a control token: empty text, its id
    ]
    assert partials[-1]["tokens"] == [128009]
    assert final["stop"] is True
    assert (final["content"], final["tokens"], final["stop_type"]) == ("", [], "eos")
    assert final["tokens_predicted"] == 3
    assert final["prompt"].startswith("<|begin_of_text|><|start_header_id|>")
    assert set(final["timings"]) >= {"prompt_n", "cache_n", "predicted_n", "prompt_ms"}


async def test_control_tokens_are_text_only_with_special() -> None:
    script = call_tool("f", {})
    for special, first in ((False, ""), (True, "<|python_tag|>")):
        async with LlamaCppEmulator(script, special=special) as emu:
            _, lines = await stream(emu.url, {"prompt": PROMPT, "stream": True})
        partials = events(lines)[:-1]
        assert (partials[0]["content"], partials[0]["tokens"]) == (first, [128010])
        assert partials[-1]["tokens"] == [128008]


async def test_limit_word_and_cache() -> None:
    async with LlamaCppEmulator(answer("one two three")) as emu:
        _, lines = await stream(emu.url, {"prompt": PROMPT, "n_predict": 2, "stream": True})
        assert events(lines)[-1]["stop_type"] == "limit"
        _, lines = await stream(emu.url, {"prompt": PROMPT, "stop": [" three"], "stream": True})
        final = events(lines)[-1]
        assert (final["stop_type"], final["stopping_word"]) == ("word", " three")
        assert "".join(e["content"] for e in events(lines)) == "one two"
        # The same prompt again: all but its last token come from the slot's cache.
        assert final["timings"]["cache_n"] == final["tokens_evaluated"] - 1


async def test_the_connection_is_closed_after_a_stream() -> None:
    async with LlamaCppEmulator(answer("Hi")) as emu:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                emu.url + "/completion", json={"prompt": PROMPT, "stream": True}
            ) as response:
                await response.read()
            async with session.get(emu.url + "/props") as response:
                assert response.status == 200
        assert emu.requests[-1].path == "/props"


async def test_errors_have_llama_servers_shape() -> None:
    async with (
        LlamaCppEmulator(answer("Hi"), n_ctx=8, api_key="k", faults=[Busy()]) as emu,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(emu.url + "/health") as response:  # public
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with session.get(emu.url + "/props") as response:
            body = await response.json()
            assert response.status == 401
            assert body["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer k"}
        post = {"prompt": PROMPT, "stream": True}
        async with session.post(emu.url + "/completion", json=post, headers=auth) as response:
            assert response.status == 503
            assert (await response.json())["error"]["type"] == "unavailable_error"
        async with session.post(emu.url + "/completion", json=post, headers=auth) as response:
            error = (await response.json())["error"]
            assert response.status == 400
            assert error["type"] == "exceed_context_size_error"
            assert error["n_ctx"] == 8
            assert error["n_prompt_tokens"] > 8
            assert "exceeds the available context size" in error["message"]


async def test_props_models_and_tokenize() -> None:
    async with (
        LlamaCppEmulator(answer("Hi"), alias="llama3.3", n_ctx=4096) as emu,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(emu.url + "/props") as response:
            props = await response.json()
        async with session.get(emu.url + "/v1/models") as response:
            models = await response.json()
        body = {"content": "<|python_tag|>x", "with_pieces": True, "add_special": True}
        async with session.post(emu.url + "/tokenize", json=body) as response:
            tokens = (await response.json())["tokens"]
    assert props["default_generation_settings"]["n_ctx"] == 4096
    assert props["build_info"]
    assert models["data"][0]["id"] == "llama3.3"
    assert models["data"][0]["meta"]["n_ctx"] == 4096
    assert tokens[:2] == [
        {"id": 128000, "piece": "<|begin_of_text|>"},
        {"id": 128010, "piece": "<|python_tag|>"},
    ]


def test_serve_engine_llamacpp_runs_until_terminated() -> None:
    command = [sys.executable, "-m", "agent.testing", "serve", "--engine", "llamacpp"]
    process = subprocess.Popen(
        [*command, "--reply", "Pong.", "--models", "llama3.3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        models = httpx.get(f"{url}/v1/models", timeout=30).json()
        assert models["data"][0]["id"] == "llama3.3"
        body = {"prompt": "x", "stream": True}
        lines = httpx.post(f"{url}/completion", json=body, timeout=30).text.split("\n")
        contents = [json.loads(line[6:])["content"] for line in lines if line.startswith("data:")]
        assert "".join(contents) == "Pong."
    finally:
        process.terminate()
        process.wait(timeout=30)
