"""`OllamaBackend` over real loopback HTTP against the emulator: the happy paths."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import pytest

from agent.backends import Done, GenerateOptions, OllamaBackend, PullProgress, TextChunk
from agent.errors import (
    BackendResponseError,
    ContextOverflowError,
    ModelCapabilityError,
    ModelNotFoundError,
)
from agent.llama3 import count_tokens
from agent.testing import EmulatedModel, OllamaEmulator, ScriptRequest, answer

pytestmark = pytest.mark.anyio

BODY = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
BOT = "<|begin_of_text|>"
PROMPT = BOT + BODY


async def collect(
    backend: OllamaBackend, prompt: str = PROMPT, model: str = "llama3.1", **options: object
) -> tuple[str, Done]:
    chunks: list[str] = []
    done: Done | None = None
    async for event in backend.generate(prompt, model=model, options=GenerateOptions(**options)):  # type: ignore[arg-type]
        if isinstance(event, TextChunk):
            assert done is None
            chunks.append(event.text)
        else:
            done = event
    assert done is not None
    return "".join(chunks), done


@pytest.fixture
async def emu() -> AsyncIterator[OllamaEmulator]:
    async with OllamaEmulator(answer("Hello there.")) as emulator:
        yield emulator


async def test_generate_sends_the_raw_prompt_and_every_option(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        text, done = await collect(
            backend,
            temperature=0.0,
            seed=7,
            top_p=0.9,
            top_k=20,
            num_predict=64,
            stop=["Observation:"],
            keep_alive="30m",
        )
    assert text == "Hello there."
    record = emu.completions[0]
    assert record.body["prompt"] == BODY  # the BOS text is dropped: Ollama adds its own
    assert record.body["raw"] is True
    assert record.body["stream"] is True
    assert record.body["keep_alive"] == "30m"
    assert record.options == {
        "num_ctx": 8192,
        "num_predict": 64,
        "temperature": 0.0,
        "seed": 7,
        "top_p": 0.9,
        "top_k": 20,
        # The caller's stops replace the Modelfile's on the server: Llama 3's are added back.
        "stop": [
            "Observation:",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
        ],
    }
    assert record.headers["user-agent"].startswith("llama-agent/")  # aiohttp, not the client
    assert done.done_reason == "stop"
    assert done.warnings == ()
    assert done.usage.prompt_tokens_sent == record.prompt_tokens == 1 + count_tokens(BODY)
    assert done.usage.prompt_eval_count == record.prompt_eval_count
    assert done.usage.num_ctx == 8192
    assert done.usage.eval_count == record.eval_count
    assert done.usage.total_duration > 0


async def test_num_ctx_sized_from_the_prompt_and_kept(emu: OllamaEmulator) -> None:
    long = PROMPT + "word " * 4000
    async with OllamaBackend(emu.url) as backend:
        await collect(backend, long)
        await collect(backend)  # a short prompt keeps the larger context: no reload
    sizes = [r.options["num_ctx"] for r in emu.completions]
    # Twice what the long prompt needs (its tokens plus the 2048 reserved for the answer).
    needed = 1 + count_tokens(long.removeprefix(BOT)) + 2048
    assert sizes[0] == sizes[1] == 16384 >= 2 * needed
    assert [r.reloaded for r in emu.completions] == [True, False]


def _turn(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"


async def test_a_ten_step_conversation_past_4096_tokens_never_reloads_the_model() -> None:
    result = "sunny and warm, " * 100  # about 400 tokens per tool result
    async with (
        OllamaEmulator(answer('<|python_tag|>{"name": "weather", "parameters": {}}')) as emu,
        OllamaBackend(emu.url) as backend,
    ):
        prompt = BOT + _turn("system", "You answer questions. " * 300) + _turn("user", "Go.")
        for _ in range(10):
            prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n"
            text, done = await collect(backend, prompt)
            assert done.warnings == ()
            prompt += text + "<|eom_id|>" + _turn("ipython", result)
    records = emu.completions
    assert records[0].prompt_tokens < 4096 < records[-1].prompt_tokens
    assert {r.num_ctx for r in records} == {8192}
    assert [r.reloaded for r in records] == [True] + [False] * 9
    # So every step after the first prefilled only what it added.
    assert all(r.cached_tokens > records[i].prompt_tokens for i, r in enumerate(records[1:]))


async def test_a_set_num_ctx_is_sent_on_every_request(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        await collect(backend, num_ctx=16384)
        await collect(backend, PROMPT + "word " * 6000, num_ctx=16384)
        _, done = await collect(backend, num_ctx=16384)
        # Capped by the model's own context length.
        await collect(backend, model="llama3.2", num_ctx=10**6)
    assert [r.num_ctx for r in emu.completions] == [16384, 16384, 16384, 131072]
    assert [r.reloaded for r in emu.completions] == [True, False, False, True]
    assert done.usage.num_ctx == 16384


async def test_conversations_sharing_a_model_agree_on_its_num_ctx(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        await collect(backend)
        await collect(backend, PROMPT + "word " * 10000)  # a long run grows the size...
        await collect(backend)  # ...and a short run keeps it rather than reload the model
        await collect(backend, model="llama3.2")  # per model
    # Twice what the long prompt needs (about 10,000 + 2,048), as a power of two.
    assert [r.num_ctx for r in emu.completions] == [8192, 32768, 32768, 8192]
    assert [r.reloaded for r in emu.completions] == [True, True, False, True]


async def test_a_caller_stop_keeps_the_llama3_stops() -> None:
    # Ollama <= 0.29 prints a stray header as text; only a stop string ends the turn there.
    runaway = "Sunny.<|start_header_id|>user<|end_header_id|>\n\nThanks!"
    async with (
        OllamaEmulator(answer(runaway), version="0.12.6") as emu,
        OllamaBackend(emu.url) as backend,
    ):
        text, done = await collect(backend, stop=["Observation:"])
        plain, _ = await collect(backend)
    assert text == plain == "Sunny."
    assert done.done_reason == "stop"


async def test_a_conversation_is_counted_incrementally(emu: OllamaEmulator) -> None:
    def turn(question: str) -> str:
        return (
            f"<|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )

    prompt = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        + "Be brief and precise. " * 300
        + "<|eot_id|>"
        + turn("Question 0?")
    )
    sent_chars = 0
    first_chars = len(prompt) - len(BOT)
    added_chars = 0
    async with OllamaBackend(emu.url) as backend:
        for step in range(1, 6):
            text, done = await collect(backend, prompt)
            assert done.usage.prompt_tokens_sent == 1 + count_tokens(prompt.removeprefix(BOT))
            assert done.usage.prompt_eval_count < done.usage.prompt_tokens_sent or step == 1
            assert done.warnings == ()  # the cache check agrees with the server
            sent_chars += len(prompt) - len(BOT)
            added = text + "<|eot_id|>" + turn(f"Question {step}?")
            added_chars += len(added) if step < 5 else 0
            prompt += added
        counter = backend.token_counter
    # The first prompt whole, then per step only its new text; the cache check counts nothing
    # (each step's report is explained by the step before): far less than every prompt whole.
    assert counter.misses == 1
    assert counter.counted_chars <= first_chars + added_chars + 10 * 4
    assert counter.counted_chars < sent_chars / 3


async def test_model_info_is_asked_once_and_describes_the_model(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        infos = []
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: _append(infos, backend.model_info("llama3.2")))
        await collect(backend, model="llama3.2")
        assert await backend.version() == "0.12.6"
    paths = [r.path for r in emu.requests]
    assert paths.count("/api/show") == 1
    assert paths.count("/api/version") == 1
    info = infos[0]
    assert (info.name, info.family, info.context_length) == ("llama3.2", "3.2", 131072)
    assert info.supports_tools
    assert info.server_version == "0.12.6"


async def _append(into: list[object], call: object) -> None:
    into.append(await call)  # type: ignore[misc]


async def test_ensure_model_checks_capabilities() -> None:
    models = [
        EmulatedModel.llama("llama3.1"),
        EmulatedModel.llama("plain-llama3.1", capabilities=("completion",)),
        EmulatedModel.llama("embed-llama3.1", capabilities=("embedding",)),
    ]
    async with OllamaEmulator(models=models) as emu, OllamaBackend(emu.url) as backend:
        assert (await backend.ensure_model("llama3.1", tools=True)).supports_tools
        await backend.ensure_model("plain-llama3.1")
        with pytest.raises(ModelCapabilityError, match="does not support tools"):
            await backend.ensure_model("plain-llama3.1", tools=True)
        with pytest.raises(ModelCapabilityError, match="cannot generate text"):
            await backend.ensure_model("embed-llama3.1")
        # The server's own refusal is translated too.
        with pytest.raises(ModelCapabilityError, match="does not support generate"):
            await collect(backend, model="embed-llama3.1")


async def test_unknown_model_says_how_to_pull_it(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        with pytest.raises(ModelNotFoundError, match=r"ollama pull nosuch") as caught:
            await collect(backend, model="nosuch")
    assert caught.value.model == "nosuch"


async def test_pull_missing_pulls_with_progress() -> None:
    seen: list[PullProgress] = []
    async with (
        OllamaEmulator(answer("ok"), models=[]) as emu,
        OllamaBackend(emu.url, pull_missing=True, on_pull_progress=seen.append) as backend,
    ):
        text, _ = await collect(backend, model="llama3.1:8b")
    assert text == "ok"
    assert seen[0].status == "pulling manifest"
    assert seen[-1].status == "success"
    assert any(p.fraction == 1.0 for p in seen)


async def test_pull_streams_progress_and_reports_unknown_names(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        statuses = [p.status async for p in backend.pull("llama3.2:1b")]
        assert statuses[-1] == "success"
        with pytest.raises(BackendResponseError, match="could not pull 'nosuch'"):
            [p async for p in backend.pull("nosuch")]


async def test_length_is_reported(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        text, done = await collect(backend, num_predict=2)
    assert text == "Hello there"
    assert done.done_reason == "length"


async def test_conversation_too_long_is_an_error_not_a_truncation(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend, PROMPT + "word " * 3000, num_ctx=2048)
    assert caught.value.available == 2048
    assert emu.completions == []


async def test_truncation_by_the_server_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # A server that gives the model less context than asked (memory, a proxy): Ollama then
    # truncates silently; only prompt_eval_count shows it.
    capped = EmulatedModel.llama("llama3.1", max_num_ctx=256)
    async with (
        OllamaEmulator(answer("ok"), models=[capped]) as emu,
        OllamaBackend(emu.url) as backend,
    ):
        with caplog.at_level(logging.WARNING, logger="agent.backends.ollama"):
            _, done = await collect(backend, PROMPT + "word " * 300)
    assert emu.completions[0].truncated
    assert len(done.warnings) == 1
    assert "truncated" in done.warnings[0]
    assert "context of 256 tokens" in done.warnings[0]
    assert any("truncated" in r.getMessage() for r in caplog.records)


async def test_a_cache_filled_by_someone_else_is_not_a_warning(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as earlier:  # e.g. this program before a restart
        await collect(earlier)
    async with OllamaBackend(emu.url) as backend:
        _, done = await collect(backend)
    assert done.usage.prompt_eval_count == 1  # all but the last token came from the cache
    assert done.warnings == ()


async def test_cache_hits_are_not_warnings(emu: OllamaEmulator) -> None:
    async with OllamaBackend(emu.url) as backend:
        text, first = await collect(backend)
        follow = (
            PROMPT + text + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd?<|eot_id|>"
        )
        _, second = await collect(backend, follow)
    assert second.usage.prompt_eval_count < second.usage.prompt_tokens_sent
    assert first.warnings == second.warnings == ()


async def test_concurrency_limits_requests_in_flight() -> None:
    active = peak = 0
    two_in_flight = anyio.Event()

    async def script(request: ScriptRequest) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == 2:
            two_in_flight.set()
        with anyio.fail_after(10):  # with a limit of 1 this would time out: a loud failure
            await two_in_flight.wait()
        await anyio.sleep(0.01)
        active -= 1
        return "ok"

    async with (
        OllamaEmulator(script) as emu,
        OllamaBackend(emu.url, concurrency=2) as backend,
        anyio.create_task_group() as tg,
    ):
        for _ in range(6):
            tg.start_soon(collect, backend)
    assert peak == 2
    assert len(emu.completions) == 6


async def test_leaving_early_closes_the_stream() -> None:
    async with (
        OllamaEmulator(answer("a b c d e f g h"), token_rate=20) as emu,
        OllamaBackend(emu.url) as backend,
    ):
        stream = backend.generate(PROMPT, model="llama3.1", options=GenerateOptions())
        async with contextlib.aclosing(stream):
            async for event in stream:
                assert isinstance(event, TextChunk)
                break
        with anyio.fail_after(10):
            await emu.wait_idle()
    record = emu.completions[0]
    assert record.cancelled
    assert not record.finished
