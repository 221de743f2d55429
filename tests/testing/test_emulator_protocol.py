"""The emulator against PROTOCOL.md, driven by the official `ollama` client and plain httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import pytest

from agent.testing import EmulatedModel, OllamaEmulator, answer, call_tool

pytestmark = pytest.mark.anyio

RAW = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# PROTOCOL.md §1.3, the raw-mode sample stream for scripted output "Hi there" ending in EOT.
SAMPLE_CHUNK = '{"model":"llama3.1","created_at":"…Z","response":"Hi","done":false}'
SAMPLE_FINAL = (
    '{"model":"llama3.1","created_at":"…Z","response":"","done":true,"done_reason":"stop",'
    '"total_duration":1,"load_duration":1,"prompt_eval_count":57,"prompt_eval_duration":1,'
    '"eval_count":3,"eval_duration":1}'
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The city."}},
        },
    },
}


def keys(line: str) -> list[str]:
    return list(json.loads(line).keys())


@pytest.fixture
async def emu() -> AsyncIterator[OllamaEmulator]:
    async with OllamaEmulator(answer("Hi there")) as emulator:
        yield emulator
    assert emulator.errors == []  # no handler failed behind the scenes


@pytest.fixture
async def http(emu: OllamaEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.url) as client:
        yield client


async def test_raw_stream_matches_the_protocol_sample(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/generate", json={"model": "llama3.1", "prompt": RAW, "raw": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["transfer-encoding"] == "chunked"
    lines = response.text.splitlines()
    assert response.text.endswith("\n")
    assert [json.loads(x)["response"] for x in lines[:-1]] == ["Hi", " there"]
    assert keys(lines[0]) == keys(SAMPLE_CHUNK)
    assert keys(lines[-1]) == keys(SAMPLE_FINAL)  # same fields, same order, no `context`
    final = json.loads(lines[-1])
    assert final["eval_count"] == 3
    assert all(isinstance(final[k], int) and final[k] > 0 for k in keys(SAMPLE_FINAL) if "dur" in k)
    assert final["created_at"].endswith("Z")


async def test_non_stream_and_templated_context(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/generate", json={"model": "llama3.1", "prompt": "Hi", "stream": False}
    )
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["response"] == "Hi there"
    assert body["done"] is True
    assert isinstance(body["context"], list)  # templated mode only (§1.3)


async def test_official_client_generate_show_list_ps_version(emu: OllamaEmulator) -> None:
    client = ollama.AsyncClient(emu.url)
    parts = [p async for p in await client.generate("llama3.1", RAW, raw=True, stream=True)]
    assert "".join(p.response or "" for p in parts) == "Hi there"
    assert parts[-1].done
    assert parts[-1].done_reason == "stop"
    show = await client.show("llama3.1")
    assert show.modelinfo is not None
    assert show.modelinfo["llama.context_length"] == 131072
    assert show.capabilities == ["completion", "tools"]
    assert show.parameters is not None
    assert show.parameters.startswith(f'{"stop":<30} "<|start')
    listed = await client.list()
    assert [m.model for m in listed.models] == [
        "llama3.1:latest",
        "llama3.2:latest",
        "llama3.3:latest",
    ]
    ps = await client.ps()
    assert [m.model for m in ps.models] == ["llama3.1:latest"]
    assert ps.models[0].context_length == 4096
    async with httpx.AsyncClient(base_url=emu.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
        root = await http.get("/")
        assert root.text == "Ollama is running"
        missing = await http.get("/api/nothing")
        assert (missing.status_code, missing.text) == (404, "404 page not found")


async def test_chat_with_tools_sends_calls_in_a_non_final_chunk() -> None:
    script = call_tool("get_weather", {"city": "Tokyo"}, then="22C")
    async with OllamaEmulator(script, version="0.12.10") as emu:
        client = ollama.AsyncClient(emu.url)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Tokyo?"}]
        parts = [
            p
            async for p in await client.chat(
                "llama3.1", messages, tools=[WEATHER_TOOL], stream=True
            )
        ]
        assert len(parts) == 2
        call_chunk, final = parts
        assert not call_chunk.done
        assert final.done
        assert call_chunk.message.content == ""
        assert call_chunk.message.tool_calls is not None
        call = call_chunk.message.tool_calls[0]
        assert (call.function.name, dict(call.function.arguments)) == (
            "get_weather",
            {"city": "Tokyo"},
        )
        prompt = emu.completions[-1].prompt or ""
        assert "Question: weather in Tokyo?" in prompt
        assert '{"type":"function","function":{"name":"get_weather"' in prompt
        # The raw wire has `id` (≥ 0.12.10) and `index`, which the Python client drops (§4).
        async with httpx.AsyncClient(base_url=emu.url) as http:
            text = (
                await http.post(
                    "/api/chat",
                    json={"model": "llama3.1", "messages": messages, "tools": [WEATHER_TOOL]},
                )
            ).text
        wire_call = json.loads(text.splitlines()[0])["message"]["tool_calls"][0]
        assert wire_call["id"].startswith("call_")
        assert len(wire_call["id"]) == 13
        assert wire_call["function"]["index"] == 0
        # After the tool result the model answers; the tool turn is rendered as ipython.
        messages += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
                ],
            },
            {"role": "tool", "content": "22C"},
        ]
        reply = await client.chat("llama3.1", messages, tools=[WEATHER_TOOL])
        assert reply.message.content == "22C"
        assert "<|start_header_id|>ipython<|end_header_id|>\n\n22C<|eot_id|>" in (
            emu.completions[-1].prompt or ""
        )


async def test_chat_without_json_first_is_streamed_as_content() -> None:
    async with OllamaEmulator(answer("Sure: it is sunny.")) as emu:
        client = ollama.AsyncClient(emu.url)
        parts = [
            p
            async for p in await client.chat(
                "llama3.1", [{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], stream=True
            )
        ]
        assert "".join(p.message.content or "" for p in parts) == "Sure: it is sunny."
        assert len(parts) > 2


async def test_pull_streams_progress_and_adds_the_model(emu: OllamaEmulator) -> None:
    client = ollama.AsyncClient(emu.url)
    statuses = [p async for p in await client.pull("llama3.2:1b", stream=True)]
    assert statuses[0].status == "pulling manifest"
    assert statuses[-1].status == "success"
    assert any(p.total and p.completed == p.total for p in statuses)
    assert emu.find_model("llama3.2:1b") is not None
    with pytest.raises(ollama.ResponseError) as caught:
        [p async for p in await client.pull("nosuchmodel", stream=True)]
    assert caught.value.error == "pull model manifest: file does not exist"
    assert caught.value.status_code == -1  # the error came in-band after a 200


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
        (
            "/api/generate",
            {"model": "llama3.1", "prompt": "x", "raw": True, "system": "s"},
            400,
            "raw mode does not support template, system, or context",
        ),
        (
            "/api/generate",
            {"model": "llama3.1", "prompt": "x", "think": True},
            400,
            '"llama3.1" does not support thinking',
        ),
        (
            "/api/generate",
            {"model": "llama3.1", "prompt": "x", "options": {"num_ctx": "big"}},
            500,
            'option "num_ctx" must be of type integer',
        ),
        ("/api/generate", {"prompt": "x"}, 400, "model is required"),
    ],
)
async def test_error_shapes(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, error: str
) -> None:
    response = await http.post(path, json=body)
    assert response.status_code == status
    assert response.json() == {"error": error}
    assert response.headers["content-type"] == "application/json; charset=utf-8"


async def test_body_errors(http: httpx.AsyncClient) -> None:
    empty = await http.post("/api/generate", content=b"")
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})
    bad = await http.post("/api/generate", content=b"{bad")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("invalid character")


async def test_tools_to_a_model_without_the_capability() -> None:
    plain = EmulatedModel.llama("llama3-instruct", capabilities=("completion",))
    async with OllamaEmulator(models=[plain]) as emu:
        client = ollama.AsyncClient(emu.url)
        with pytest.raises(ollama.ResponseError) as caught:
            await client.chat(
                "llama3-instruct", [{"role": "user", "content": "x"}], tools=[WEATHER_TOOL]
            )
        assert caught.value.status_code == 400
        assert caught.value.error == (
            "registry.ollama.ai/library/llama3-instruct:latest does not support tools"
        )


async def test_load_and_unload(http: httpx.AsyncClient, emu: OllamaEmulator) -> None:
    load = (await http.post("/api/generate", json={"model": "llama3.1"})).json()
    assert (load["done"], load["done_reason"]) == (True, "load")
    unload = await http.post("/api/generate", json={"model": "llama3.1", "keep_alive": 0})
    assert unload.json()["done_reason"] == "unload"
    assert (await http.get("/api/ps")).json() == {"models": []}


async def test_string_arguments_in_history_are_rejected(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
    ]
    response = await http.post("/api/chat", json={"model": "llama3.1", "messages": messages})
    assert response.status_code == 400
    assert "api.ToolCallFunctionArguments" in response.json()["error"]


async def test_llama_server_engine_hides_control_tokens() -> None:
    script = call_tool("f", {"x": 1})
    async with OllamaEmulator(script, version="0.30.1") as emu:
        client = ollama.AsyncClient(emu.url)
        parts = [p async for p in await client.generate("llama3.1", RAW, raw=True, stream=True)]
        assert "".join(p.response or "" for p in parts) == '{"name": "f", "parameters": {"x": 1}}'
    async with OllamaEmulator(script) as emu:  # 0.12.6: the llamarunner engine
        client = ollama.AsyncClient(emu.url)
        parts = [p async for p in await client.generate("llama3.1", RAW, raw=True, stream=True)]
        assert "".join(p.response or "" for p in parts).startswith("<|python_tag|>{")
