"""`PoolBackend` over real loopback HTTP against several Ollama emulators."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from agent import Agent
from agent.backends import (
    ENGINES,
    Done,
    Engine,
    GenerateOptions,
    OllamaBackend,
    PoolBackend,
    Retries,
    TextChunk,
    Timeouts,
    connect,
    engine_backend,
    run_affinity,
)
from agent.errors import BackendUnreachableError, DeveloperError, ModelNotFoundError
from agent.loop import StepFinished
from agent.testing import DropConnection, OllamaEmulator, ServerError, answer, call_tool, echo

pytestmark = pytest.mark.anyio

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
ANSWER = "The quick brown fox jumps over the lazy dog, twice over."


@contextlib.asynccontextmanager
async def emulators(
    count: int, script: object = None, **knobs: object
) -> AsyncIterator[list[OllamaEmulator]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(OllamaEmulator(script, **knobs))  # type: ignore[arg-type]
            for _ in range(count)
        ]


def pool_of(emus: Sequence[OllamaEmulator], **kwargs: object) -> PoolBackend:
    retries = Retries(backoff_base=0.01, backoff_max=0.02)
    backends = [OllamaBackend(e.url, retries=retries) for e in emus]
    return PoolBackend(backends, **kwargs)  # type: ignore[arg-type]


async def collect(
    backend: PoolBackend, prompt: str = PROMPT, **options: object
) -> tuple[str, Done]:
    chunks: list[str] = []
    done: Done | None = None
    async for event in backend.generate(
        prompt, model="llama3.1", options=GenerateOptions(**options)
    ):  # type: ignore[arg-type]
        if isinstance(event, TextChunk):
            chunks.append(event.text)
        else:
            done = event
    assert done is not None
    return "".join(chunks), done


def served(emu: OllamaEmulator) -> list[str]:
    """The prompts of the completions `emu` answered."""
    return [r.prompt for r in emu.completions]


# --- placement ------------------------------------------------------------------------------------


async def test_every_step_of_a_run_goes_to_its_host() -> None:
    async with emulators(3, call_tool("add", {"a": 1, "b": 2}, then="Three.")) as emus:

        def add(a: int, b: int) -> int:
            """Add two numbers."""
            return a + b

        async with pool_of(emus) as pool, Agent("llama3.1", tools=[add], backend=pool) as agent:
            results = []

            async def one(task: str) -> None:
                results.append(await agent.run(task))

            async with anyio.create_task_group() as group:
                for i in range(6):
                    group.start_soon(one, f"task number {i}")
        assert all(r.answer == "Three." and r.steps == 2 for r in results)
        for i in range(6):
            hosts = [e for e in emus if any(f"task number {i}" in p for p in served(e))]
            assert len(hosts) == 1, f"run {i} was spread over {len(hosts)} hosts"
            assert sum(f"task number {i}" in p for p in served(hosts[0])) == 2
        # Six runs over three idle hosts: each got some (least loaded, ties in turn).
        assert all(served(e) for e in emus)
        assert not any(r.warnings for r in results)


async def test_a_request_without_a_run_goes_to_the_least_loaded_host() -> None:
    async with emulators(2, answer(ANSWER), token_rate=50.0) as emus, pool_of(emus) as pool:
        stream = pool.generate(PROMPT, model="llama3.1", options=GenerateOptions())
        first = await anext(stream)  # one request streaming from the first host
        assert isinstance(first, TextChunk)
        assert [h.in_flight for h in pool.hosts] == [1, 0]
        text, _ = await collect(pool)  # goes to the idle one
        assert text == ANSWER
        await stream.aclose()  # type: ignore[attr-defined]
        assert [h.in_flight for h in pool.hosts] == [0, 0]
        assert [len(served(e)) for e in emus] == [1, 1]


async def test_the_run_id_comes_from_the_context_when_generate_is_called() -> None:
    async with emulators(3, answer("ok")) as emus, pool_of(emus) as pool:
        token = run_affinity.set("run-a")
        try:
            streams = [pool.generate(PROMPT, model="llama3.1", options=GenerateOptions())]
        finally:
            run_affinity.reset(token)
        for _ in range(3):
            async for _event in streams[0]:
                pass
            token = run_affinity.set("run-a")
            try:
                streams[0] = pool.generate(PROMPT, model="llama3.1", options=GenerateOptions())
            finally:
                run_affinity.reset(token)
        await streams[0].aclose()  # type: ignore[attr-defined]
        host = pool.host_of("run-a")
        assert host is not None
        assert [len(served(e)) for e in emus if e.url == host] == [3]
        assert sum(len(served(e)) for e in emus) == 3


async def test_a_host_is_given_at_most_concurrency_requests() -> None:
    async with (
        emulators(2, answer(ANSWER), latency=0.05) as emus,
        pool_of(emus, concurrency=1) as pool,
    ):
        seen: list[tuple[int, ...]] = []

        async def one() -> None:
            async for event in pool.generate(PROMPT, model="llama3.1", options=GenerateOptions()):
                if isinstance(event, TextChunk):
                    seen.append(tuple(h.in_flight for h in pool.hosts))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
        assert seen
        assert max(max(s) for s in seen) == 1
        assert all(h.served >= 1 for h in pool.hosts)
        assert sum(len(served(e)) for e in emus) == 5


# --- failures -------------------------------------------------------------------------------------


async def test_a_run_whose_host_dies_between_steps_finishes_on_another() -> None:
    async with emulators(2, call_tool("shutdown_host", {}, then="Done, all good.")) as emus:
        killed: list[OllamaEmulator] = []

        async def shutdown_host() -> str:
            """Stop the server that served this step."""
            victim = next(e for e in emus if e.completions)
            await victim.refuse_connections()
            killed.append(victim)
            return "stopped"

        async with (
            pool_of(emus) as pool,
            Agent("llama3.1", tools=[shutdown_host], backend=pool) as agent,
        ):
            stream = agent.stream("Stop your server, then tell me.")
            events = [event async for event in stream]
            result = stream.result
        assert result.status == "answered", result.error
        assert result.answer == "Done, all good."
        victim = killed[0]
        survivor = next(e for e in emus if e is not victim)
        # The second step went to the survivor with the whole conversation, tool result included.
        [second] = served(survivor)
        assert "Stop your server, then tell me." in second
        assert "stopped" in second
        assert [m.role for m in result.messages][-4:] == ["user", "assistant", "tool", "assistant"]
        [warning] = result.warnings
        assert victim.url in warning
        assert survivor.url in warning
        assert "unreachable" in warning
        steps = [e for e in events if isinstance(e, StepFinished)]
        assert steps[-1].warnings == (warning,)
        assert [h.healthy for h in pool.hosts] == [e is not victim for e in emus]
        assert pool.moves == 1


async def test_a_run_whose_host_was_taken_out_continues_elsewhere_from_its_last_step() -> None:
    async with emulators(2, call_tool("outage", {}, then="Carried on.")) as emus:
        pool = pool_of(emus)

        async def outage() -> str:
            """The first host goes down; other requests find out and take it out."""
            await emus[0].refuse_connections()
            await collect(pool)  # in turn: the second host
            await collect(pool)  # the first: refused, taken out, sent to the second
            return "it went down"

        async with pool, Agent("llama3.1", tools=[outage], backend=pool) as agent:
            result = await agent.run("Go.")
        assert result.status == "answered", result.error
        assert result.answer == "Carried on."
        first_step = [p for p in served(emus[0]) if "Go." in p]
        assert len(first_step) == 1
        [second_step] = [p for p in served(emus[1]) if "it went down" in p]
        assert second_step.startswith(first_step[0])  # the whole conversation, prefilled anew
        [warning] = result.warnings
        assert warning.startswith(f"{emus[0].url} is out (unreachable")
        assert f"continues on {emus[1].url} from its last complete step" in warning


async def test_a_stream_that_drops_mid_answer_is_resumed_on_another_host() -> None:
    async with emulators(2, answer(ANSWER)) as emus, pool_of(emus) as pool:
        # Both attempts on the first host break off (the host backend retries once itself).
        emus[0].inject(DropConnection(after_chunks=3, times=2))
        text, done = await collect(pool)
        assert text == ANSWER  # nothing repeated, nothing lost
        first, _retry = served(emus[0])
        [resumed] = served(emus[1])
        assert resumed.startswith(first)
        assert len(resumed) > len(first)
        partial = resumed[len(first) :]
        assert ANSWER.startswith(partial)
        [warning] = [w for w in done.warnings if emus[1].url in w]
        assert emus[0].url in warning
        assert "resumed" in warning
        assert f"{len(partial)} char" in warning
        assert not pool.hosts[0].healthy
        assert "stream" in pool.hosts[0].last_error
        # Every token counts once: those of the failed host and those of the one that finished.
        _, clean = await collect(pool)
        assert done.usage.eval_count == clean.usage.eval_count


async def test_a_5xx_before_any_text_sends_the_request_again_elsewhere() -> None:
    async with emulators(2, answer("Fine.")) as emus, pool_of(emus) as pool:
        emus[0].inject(ServerError(status=500))
        text, done = await collect(pool)
        assert text == "Fine."
        assert "answered 500" in done.warnings[0]
        assert "sent again" in done.warnings[0]
        assert pool.hosts[0].failures == 1


async def test_a_num_predict_cap_counts_the_text_before_the_move() -> None:
    async with emulators(2, answer(ANSWER)) as emus, pool_of(emus) as pool:
        # Three chunks, resumed on the same host, three more: then the move.
        emus[0].inject(DropConnection(after_chunks=3, times=2))
        text, done = await collect(pool, num_predict=10)
        [resumed] = emus[1].completions
        assert resumed.options["num_predict"] == 10 - 6  # one chunk is one token
        assert done.done_reason == "length"
        assert ANSWER.startswith(text)
        assert len(text) < len(ANSWER)


class Clock:
    """Time for the pool's backoffs that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_host_comes_back_after_its_probe_answers() -> None:
    clock = Clock()
    async with emulators(2, answer("Back.")) as emus:
        pool = pool_of(emus, backoff_base=10.0, backoff_max=10.0, clock=clock)  # out 5-10 s
        async with pool:
            await emus[0].refuse_connections()
            await collect(pool)  # fails on the first, served by the second
            assert [h.healthy for h in pool.hosts] == [False, True]
            assert 5.0 <= pool.hosts[0].out_for <= 10.0
            await collect(pool)
            await collect(pool)  # while it is out, nothing is sent to it, not even a probe
            assert pool.hosts[0].failures == 1
            clock.now += 10.0
            await collect(pool)  # due: probed, still refused, out again (longer)
            assert not pool.hosts[0].healthy
            assert "probe failed" in pool.hosts[0].last_error
            assert pool.hosts[0].failures == 2
            await emus[0].accept_connections()
            clock.now += 10.0
            before = len(emus[0].requests)
            await collect(pool)
            assert pool.hosts[0].healthy
            probes = [r.path for r in emus[0].requests[before:]]
            assert probes[0] == "/api/version"
            # Back in: the least-loaded pick reaches it again.
            await collect(pool)
            await collect(pool)
            assert served(emus[0])


async def test_every_host_down_is_one_error_naming_each() -> None:
    async with emulators(3, answer("x")) as emus, pool_of(emus) as pool:
        for emu in emus:
            await emu.refuse_connections()
        with pytest.raises(BackendUnreachableError) as caught:
            await collect(pool)
        message = str(caught.value)
        assert all(e.url in message for e in emus)
        assert "every host of the pool is out" in message
        assert not any(h.healthy for h in pool.hosts)
        assert all(h.in_flight == 0 for h in pool.hosts)


async def test_a_request_error_is_raised_without_taking_the_host_out() -> None:
    async with emulators(2, answer("x")) as emus, pool_of(emus) as pool:
        with pytest.raises(ModelNotFoundError):
            async for _ in pool.generate(PROMPT, model="nope", options=GenerateOptions()):
                pass
        assert all(h.healthy and h.failures == 0 for h in pool.hosts)


async def test_a_timeout_before_the_first_chunk_moves_the_request() -> None:
    async with emulators(2, echo(), latency=0.0) as emus:
        emus[0].latency = 10.0
        backends = [OllamaBackend(e.url, timeouts=Timeouts(first_chunk=1.0)) for e in emus]
        async with PoolBackend(backends) as pool:
            text, done = await collect(pool)
        assert text == "Hi"
        assert "timed out before the first chunk" in done.warnings[0]


async def test_model_info_skips_a_dead_host() -> None:
    async with emulators(2, answer("x")) as emus, pool_of(emus) as pool:
        await emus[0].refuse_connections()
        info = await pool.model_info("llama3.1")
        assert info.family == "3.1"
        assert [h.healthy for h in pool.hosts] == [False, True]
        assert await pool.version() == emus[1].version


# --- engines by name ------------------------------------------------------------------------------


async def test_connect_makes_the_engine_backend_for_one_host_and_a_pool_for_several() -> None:
    one = connect("ollama", ["http://127.0.0.1:1"])
    assert isinstance(one, OllamaBackend)
    many = connect("ollama", ["http://127.0.0.1:1", "http://127.0.0.1:2"], concurrency=4)
    assert isinstance(many, PoolBackend)
    assert [h.url for h in many.hosts] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert many.concurrency == 4
    assert many.engine == "ollama"
    await one.aclose()
    await many.aclose()


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(DeveloperError, match=r"unknown engine 'tgi'.*ollama, vllm, sglang"):
        engine_backend("tgi")


def test_an_engine_not_in_this_install_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        ENGINES,
        "future",
        Engine(name="future", backend="FutureBackend", health="/", api_key_env=None),
    )
    with pytest.raises(DeveloperError, match=r"future engine is not available.*FutureBackend"):
        PoolBackend.of("future", ["http://127.0.0.1:1", "http://127.0.0.1:2"])


def test_ollama_takes_no_api_key() -> None:
    with pytest.raises(DeveloperError, match="Ollama takes no API key"):
        connect("ollama", ["http://127.0.0.1:1"], api_key="secret")


def test_a_host_listed_twice_is_refused() -> None:
    with pytest.raises(DeveloperError, match="listed twice"):
        PoolBackend([OllamaBackend("http://127.0.0.1:1"), OllamaBackend("127.0.0.1:1")])
