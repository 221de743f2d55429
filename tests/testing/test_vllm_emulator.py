"""`VLLMEmulator` speaks vLLM's wire protocol: checked over raw HTTP, without the backend."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from agent.llama3 import count_tokens
from agent.testing import (
    Busy,
    ServerError,
    VLLMEmulator,
    answer,
    call_tool,
    sequence,
)

pytestmark = pytest.mark.timeout(60)

BOT = "<|begin_of_text|>"
BODY = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def post(url: str, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, json=body, headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


async def get(url: str, path: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + path, headers=headers) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw else None


async def stream(url: str, body: dict[str, Any]) -> list[Any]:
    """The events of a streamed completion, `[DONE]` included, as parsed JSON."""
    events: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = (await response.read()).decode()
    for block in text.split("\n\n"):
        if block:
            assert block.startswith("data: ")
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def texts(events: list[Any]) -> str:
    return "".join(c["text"] for e in events if e != "[DONE]" for c in e["choices"])


def finish(events: list[Any]) -> tuple[str, Any]:
    last = next(c for e in reversed(events) if e != "[DONE]" for c in e["choices"])
    return last["finish_reason"], last["stop_reason"]


@pytest.mark.anyio
async def test_models_lists_every_served_name_with_its_max_model_len() -> None:
    async with VLLMEmulator(served_model_names=["a", "b"], max_model_len=4096) as emu:
        status, body = await get(emu.url, "/v1/models")
        version = await get(emu.url, "/version")
    assert status == 200
    assert [(m["id"], m["root"], m["max_model_len"]) for m in body["data"]] == [
        ("a", MODEL, 4096),
        ("b", MODEL, 4096),
    ]
    assert body["data"][0]["owned_by"] == "vllm"
    assert version == (200, {"version": "0.11.0"})


@pytest.mark.anyio
async def test_vllms_defaults_add_a_bos_cut_at_16_tokens_and_drop_special_tokens() -> None:
    text = "<|python_tag|>" + " word" * 30 + "<|eom_id|>"
    async with VLLMEmulator(sequence(text)) as emu:
        events = await stream(emu.url, {"model": MODEL, "prompt": BOT + BODY})
        record = emu.completions[-1]
    assert record.prompt == BOT + BOT + BODY  # the server's BOS, then the prompt's own
    assert record.prompt_tokens == count_tokens(BOT + BOT + BODY)
    assert finish(events) == ("length", None)
    assert texts(events) == " word" * 15  # 16 tokens, the first of them <|python_tag|>
    assert events[-1] == "[DONE]"
    assert "usage" not in events[-2]  # no include_usage


@pytest.mark.anyio
async def test_the_stop_reason_tells_eom_from_eot_and_from_a_stop_string() -> None:
    request = {
        "model": MODEL,
        "prompt": BOT + BODY,
        "max_tokens": 100,
        "add_special_tokens": False,
        "skip_special_tokens": False,
    }
    async with VLLMEmulator(call_tool("f", {"x": 1})) as emu:
        call = await stream(emu.url, request)
    async with VLLMEmulator(answer("Done here.")) as emu:
        answered = await stream(emu.url, request)
        stopped = await stream(emu.url, {**request, "stop": ["here"]})
        with_ids = await stream(emu.url, {**request, "stop_token_ids": [128009]})
    assert texts(call).startswith("<|python_tag|>{")
    assert finish(call) == ("stop", 128008)  # not the eos: its id
    assert "<|eom_id|>" not in texts(call)
    assert finish(answered) == ("stop", None)  # the tokenizer's eos
    assert texts(answered) == "Done here."
    assert finish(stopped) == ("stop", "here")
    assert texts(stopped) == "Done "
    assert finish(with_ids) == ("stop", None)  # eos is checked first


@pytest.mark.anyio
async def test_usage_comes_last_with_empty_choices_and_cached_tokens_when_enabled() -> None:
    request = {
        "model": MODEL,
        "prompt": BOT + "<|start_header_id|>user<|end_header_id|>\n\n" + "Hello there. " * 30,
        "max_tokens": 50,
        "add_special_tokens": False,
        "stream_options": {"include_usage": True},
    }
    async with VLLMEmulator(answer("Hi."), enable_prompt_tokens_details=True) as emu:
        await stream(emu.url, request)
        events = await stream(emu.url, request)
        prompt_tokens = emu.completions[-1].prompt_tokens
    usage_event = events[-2]
    assert usage_event["choices"] == []
    usage = usage_event["usage"]
    assert usage["prompt_tokens"] == prompt_tokens
    assert usage["completion_tokens"] == 3  # "Hi", ".", and the eos
    assert usage["total_tokens"] == prompt_tokens + 3
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < prompt_tokens
    assert cached % 16 == 0  # whole blocks


@pytest.mark.anyio
async def test_context_errors_in_the_current_and_the_old_wording() -> None:
    request = {"model": MODEL, "prompt": "word " * 100, "max_tokens": 10}
    tokens = count_tokens(BOT + "word " * 100)  # the BOS vLLM adds, and the text
    async with VLLMEmulator(max_model_len=50) as emu:
        status, body = await post(emu.url, "/v1/completions", request)
    assert status == 400
    assert body["error"]["type"] == "BadRequestError"
    assert body["error"]["message"].startswith(
        f"You passed {tokens} input tokens and requested 10 output tokens. However, the model's "
        "context length is only 50 tokens"
    )
    async with VLLMEmulator(max_model_len=50, version="0.9.2") as emu:
        status, body = await post(emu.url, "/v1/completions", request)
    assert status == 400
    assert body["object"] == "error"
    assert f"({tokens} in the messages, 10 in the completion)" in body["message"]


@pytest.mark.anyio
async def test_an_unknown_model_is_vllms_404() -> None:
    async with VLLMEmulator() as emu:
        status, body = await post(emu.url, "/v1/completions", {"model": "x", "prompt": "Hi"})
        tokenize = await post(emu.url, "/tokenize", {"model": "x", "prompt": "Hi"})
    assert status == 404
    assert body["error"] == {
        "message": "The model `x` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    assert tokenize[0] == 404


@pytest.mark.anyio
async def test_tokenize_counts_with_or_without_the_bos() -> None:
    async with VLLMEmulator(max_model_len=8192) as emu:
        _, plain = await post(
            emu.url, "/tokenize", {"prompt": BOT + BODY, "add_special_tokens": False}
        )
        _, added = await post(emu.url, "/tokenize", {"model": MODEL, "prompt": BODY})
    assert plain["count"] == added["count"] == count_tokens(BOT + BODY)
    assert plain["max_model_len"] == 8192
    assert len(plain["tokens"]) == plain["count"]


@pytest.mark.anyio
async def test_the_api_key_guards_only_the_v1_routes() -> None:
    async with VLLMEmulator(answer("Hi."), api_key="k") as emu:
        refused = await get(emu.url, "/v1/models")
        wrong = await get(emu.url, "/v1/models", Authorization="Bearer nope")
        allowed = await get(emu.url, "/v1/models", Authorization="Bearer k")
        open_routes = [await get(emu.url, "/version"), await get(emu.url, "/health")]
        tokenized = await post(emu.url, "/tokenize", {"prompt": "Hi"})
    assert refused == (401, {"error": "Unauthorized"})
    assert wrong[0] == 401
    assert allowed[0] == 200
    assert [status for status, _ in open_routes] == [200, 200]
    assert tokenized[0] == 200


@pytest.mark.anyio
async def test_a_whole_answer_without_streaming() -> None:
    async with VLLMEmulator(answer("Hello.")) as emu:
        status, body = await post(
            emu.url, "/v1/completions", {"model": MODEL, "prompt": BODY, "max_tokens": 20}
        )
    assert status == 200
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("fault", "status"), [(Busy(), 503), (ServerError(status=500, message="boom"), 500)]
)
@pytest.mark.anyio
async def test_faults_answer_in_vllms_error_shape(fault: Any, status: int) -> None:
    async with VLLMEmulator(faults=[fault]) as emu:
        code, body = await post(emu.url, "/v1/completions", {"model": MODEL, "prompt": "Hi"})
        again, _ = await post(emu.url, "/v1/completions", {"model": MODEL, "prompt": "Hi"})
    assert code == status
    assert body["error"]["code"] == status
    assert again == 200  # the fault hit one request


def test_serve_engine_vllm_runs_the_vllm_emulator_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.testing", "serve", "--engine", "vllm", "--reply", "Pong."],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        response = httpx.post(
            f"{url}/v1/completions", json={"model": MODEL, "prompt": BODY}, timeout=30
        )
        assert response.json()["choices"][0]["text"] == "Pong."
    finally:
        process.terminate()
        process.wait(timeout=30)
