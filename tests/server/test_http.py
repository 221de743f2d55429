"""`AgentServer` through real clients: the official `openai` client (streamed and not),
`httpx-sse` for the native events, and the request shapes Open WebUI and LibreChat send."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from agent import Agent
from agent.server import AgentServer, is_loopback, serve

from .conftest import RELEASE, Running, start

# --- the clients' request shapes --------------------------------------------------------------

# Open WebUI (OpenAI connection): the whole conversation each time, content as a parts array
# when a message has several parts, usage asked for, the chat's id in a header when user-info
# forwarding is on.
OPEN_WEBUI = {
    "body": {
        "model": "llama3.1",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": [{"type": "text", "text": "What is 2 + 40?"}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "headers": {
        "X-OpenWebUI-User-Name": "Ada",
        "X-OpenWebUI-User-Id": "8b7c1e2a",
        "X-OpenWebUI-Chat-Id": "c0ffee",
    },
}

# LibreChat (custom endpoint): `user` always, `name` on system and assistant messages given a
# preset name, no max_tokens.
LIBRECHAT = {
    "body": {
        "model": "llama3.1",
        "user": "6650b1f1e6c2d6a1f3c4b5a6",
        "stream": False,
        "messages": [
            {"role": "system", "name": "Calc", "content": "Answer with numbers."},
            {"role": "user", "content": "hi how are you"},
            {"role": "assistant", "name": "Calc", "content": "Fine."},
            {"role": "user", "content": "What is 2 + 40?"},
        ],
        "temperature": 0.7,
        "metadata": {"conversation": "abc"},
    },
    "headers": {},
}


def client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)


# --- OpenAI's API ---------------------------------------------------------------------------------


def test_the_openai_client_gets_the_agents_answer(served: Running) -> None:
    completion = client(served).chat.completions.create(
        model="llama3.1", messages=[{"role": "user", "content": "What is 2 + 40?"}]
    )
    assert completion.choices[0].message.content == "The answer is 42."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "llama3.1"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.model_extra is not None
    assert completion.model_extra["llama_agent"]["status"] == "answered"
    assert completion.model_extra["llama_agent"]["steps"] == 2


def test_the_openai_client_streams_the_answer(served: Running) -> None:
    stream = client(served).chat.completions.create(
        model="llama3.1",
        messages=[{"role": "user", "content": "What is 2 + 40?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer is 42."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.anyio
async def test_the_async_openai_client_streams_too(served: Running) -> None:
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="x") as api:
        stream = await api.chat.completions.create(
            model="llama3.1", messages=[{"role": "user", "content": "2 + 40?"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "The answer is 42."


def test_models_lists_the_agents_model(served: Running) -> None:
    assert [m.id for m in client(served).models.list()] == ["llama3.1"]


def test_tool_activity_comes_as_extra_chunks_when_asked(served: Running) -> None:
    stream = client(served).chat.completions.create(
        model="llama3.1",
        messages=[{"role": "user", "content": "What is 2 + 40?"}],
        stream=True,
        extra_body={"tool_events": True},
    )
    events = [
        c.model_extra["llama_agent"]["event"]
        for c in stream
        if not c.choices and c.model_extra and "llama_agent" in c.model_extra
    ]
    assert [e["type"] for e in events] == [
        "tool_call_parsed", "tool_call_validated", "tool_call_started", "tool_call_finished",
        "step_finished", "step_finished",
    ]  # fmt: skip
    assert events[3]["result"] == "42"


def test_open_webui_and_librechat_requests_are_served(served: Running) -> None:
    for shape in (OPEN_WEBUI, LIBRECHAT):
        response = httpx.post(
            served.url + "/v1/chat/completions",
            json=shape["body"],
            headers=shape["headers"],
            timeout=30,
        )
        assert response.status_code == 200, response.text
        if shape["body"]["stream"]:
            lines = [ln[6:] for ln in response.text.splitlines() if ln.startswith("data: ")]
            assert lines[-1] == "[DONE]"
            chunks = [json.loads(line) for line in lines[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
            assert text == "The answer is 42."
            assert chunks[-1]["usage"]["total_tokens"] > 0
        else:
            assert response.json()["choices"][0]["message"]["content"] == "The answer is 42."
    # The earlier turns were the history: the model saw them.
    prompts = [r.prompt or "" for r in served.emulator.completions]
    assert "Hello! How can I help?" in prompts[0]
    assert "hi how are you" in prompts[2]


def test_a_session_header_continues_the_conversation(served: Running) -> None:
    api = client(served)
    for _ in range(2):
        api.chat.completions.create(
            model="llama3.1",
            messages=[{"role": "user", "content": "What is 2 + 40?"}],
            extra_headers={"X-Session-Id": "support-42"},
        )
    first, _, second, _ = served.emulator.completions
    assert second.prompt is not None
    assert second.prompt.count("What is 2 + 40?") == 2
    assert second.prompt.startswith(first.prompt or "-")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "text"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "gpt-4o"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
        ({"messages": [{"role": "tool", "content": "1"}]}, 400, "role 'tool'"),
        ({"messages": []}, 400, "non-empty"),
    ],
)
def test_requests_it_cannot_serve_get_openai_errors(
    served: Running, body: dict[str, object], status: int, words: str
) -> None:
    response = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]


# --- the native endpoints -------------------------------------------------------------------------


def test_the_native_endpoint_streams_typed_events(served: Running) -> None:
    with (
        httpx.Client(base_url=served.url, timeout=30) as http,
        connect_sse(http, "POST", "/v1/agent/events", json={"task": "2 + 40?"}) as source,
    ):
        events = [(sse.event, sse.json()) for sse in source.iter_sse()]
    assert events[0][0] == "run_started"
    assert events[-1][0] == "run_finished"
    assert events[-1][1]["result"]["answer"] == "The answer is 42."
    assert all(name == data["type"] for name, data in events)
    assert "tool_call_finished" in [name for name, _ in events]

    response = httpx.post(served.url + "/v1/agent/runs", json={"task": "2 + 40?"}, timeout=30)
    assert response.json()["status"] == "answered"


# --- keys, and who may connect ---------------------------------------------------------------


def test_api_keys_are_required_once_configured(tmp_path: Path) -> None:
    running = start(tmp_path, api_keys=("k-1", "k-2"))
    try:
        url = running.url + "/v1/models"
        for _ in range(100):
            try:
                assert httpx.get(url).status_code == 401
                break
            except httpx.TransportError:
                threading.Event().wait(0.05)
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer k-2"}).status_code == 200
        api = openai.OpenAI(base_url=running.url + "/v1", api_key="k-1", max_retries=0)
        assert [m.id for m in api.models.list()] == ["llama3.1"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=running.url + "/v1", api_key="bad").models.list()
    finally:
        running.stop()


@pytest.mark.anyio
async def test_without_keys_only_loopback_clients_are_served() -> None:
    async with Agent(host="http://127.0.0.1:9") as agent:
        app = AgentServer(agent)
        for host, status in [("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 403)]:
            transport = httpx.ASGITransport(app=app, client=(host, 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/v1/models")).status_code == status


@pytest.mark.anyio
async def test_serve_refuses_a_public_address_without_a_key() -> None:
    async with Agent(host="http://127.0.0.1:9") as agent:
        with pytest.raises(PermissionError, match="without an API key"):
            await serve(AgentServer(agent), host="0.0.0.0", port=1)
    assert is_loopback("127.0.0.2")
    assert is_loopback("[::1]")
    assert not is_loopback("192.0.2.1")


@pytest.mark.anyio
async def test_a_run_that_fails_is_a_502_with_the_reason() -> None:
    async with Agent(host="http://127.0.0.1:9") as agent:
        transport = httpx.ASGITransport(app=AgentServer(agent))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "OllamaUnreachableError"


# --- shutdown -------------------------------------------------------------------------------------


def test_shutdown_cancels_runs_past_the_grace_and_refuses_new_ones(served: Running) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def read() -> None:
        with (
            httpx.Client(base_url=served.url, timeout=30) as http,
            connect_sse(http, "POST", "/v1/agent/events", json={"task": "slowly"}) as source,
        ):
            seen.extend((sse.event, sse.json()) for sse in source.iter_sse())

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(200):
        if served.server.in_flight and served.emulator.completions:
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.3)  # the slow tool is running
    served.call(lambda: served.server.drain(grace=0.2))
    reader.join(30)

    assert seen[-1][0] == "run_finished"
    assert seen[-1][1]["result"]["status"] == "cancelled"  # type: ignore[index]
    assert served.server.in_flight == 0
    refused = httpx.post(served.url + "/v1/agent/runs", json={"task": "hi"}, timeout=10)
    assert refused.status_code == 503


def test_shutdown_lets_a_run_within_the_grace_finish(served: Running) -> None:
    result: list[httpx.Response] = []
    reader = threading.Thread(
        target=lambda: result.append(
            httpx.post(served.url + "/v1/agent/runs", json={"task": "slowly"}, timeout=30)
        )
    )
    reader.start()
    for _ in range(200):
        if served.server.in_flight:
            break
        threading.Event().wait(0.05)
    threading.Timer(0.3, RELEASE.set).start()  # the tool ends well within the grace
    served.call(lambda: served.server.drain(grace=10))
    reader.join(30)
    assert result[0].json()["status"] == "answered"
    assert result[0].json()["answer"] == "The answer is slow done."
