"""`PoolBackend`: several hosts of one engine behind one `Backend`, and the engines by name.

Placement: a run sticks to one host for its whole life (`run_affinity`, set by the agent loop
around each `generate`), so that host's prefix cache serves every step: with raw prompts each
step's prompt extends the previous one, and no other host holds it. A request of a new run (or
one without a run) goes to the least-loaded healthy host: fewest requests in flight, under the
per-host `concurrency` limit, ties taken in turn.

Failures: a host that fails (connection refused or reset, a 5xx, a stream dropped beyond the
host backend's own retries, a timeout before the first chunk, 503 after the host backend's
retries) is taken out for an exponential, jittered, capped backoff, then probed (a cheap GET
of the engine's health or version endpoint) on the next pick, and back in if it answers. The
request that met the failure moves to the healthiest other host:

* before any text, the same prompt is sent there (re-prefilled: its cache is cold);
* after text, the prompt plus the text already streamed is sent, so the model continues it,
  exactly as `OllamaBackend` resumes a dropped stream (raw mode makes the continuation the same
  tokens as before); the caller's stream carries on without repeating anything.

Either way `Done.warnings` names both hosts and why, and the run stays on the new host. When no
host is left: one `BackendUnreachableError` naming every host and its last failure. Errors that
are about the request, not the host (a missing model, a context overflow, the caller's own
deadline) are raised as they are: another host would answer the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from agent.backends._base import (
    Backend,
    Done,
    GenerateEvent,
    GenerateOptions,
    ModelInfo,
    Retries,
    TextChunk,
    run_affinity,
)
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    DeveloperError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import count_tokens

logger = logging.getLogger("agent.backends.pool")

__all__ = ["ENGINES", "Engine", "HostState", "PoolBackend", "connect", "engine_backend"]


@dataclass(frozen=True, kw_only=True)
class Engine:
    """What the pool knows of an engine: its backend class (by name) and how to probe a host."""

    name: str
    backend: str  # the class's name in `agent.backends`, looked up when first needed
    health: str  # a cheap GET that answers 200 when the server can take requests
    api_key_env: str | None  # the variable the engine's own tools read the key from


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine(name="ollama", backend="OllamaBackend", health="/api/version", api_key_env=None),
        # vLLM: `/health` (api_server.py), not behind `--api-key`; the server reads VLLM_API_KEY.
        Engine(name="vllm", backend="VLLMBackend", health="/health", api_key_env="VLLM_API_KEY"),
        Engine(name="sglang", backend="SGLangBackend", health="/health", api_key_env=None),
        # llama-server: `/health` answers 503 while the model loads; the server reads
        # LLAMA_API_KEY for `--api-key`.
        Engine(
            name="llamacpp",
            backend="LlamaCppBackend",
            health="/health",
            api_key_env="LLAMA_API_KEY",
        ),
    )
}
"""The engines `engine:` and `--engine` name, in the order the docs list them."""


def engine_backend(engine: str) -> type[Backend]:
    """The backend class of `engine`, from `agent.backends` (so engines that land later need no
    change here); `DeveloperError` for an unknown engine or one this install lacks."""
    known = ENGINES.get(engine)
    if known is None:
        raise DeveloperError(
            f"unknown engine '{engine}'; write one of {', '.join(ENGINES)} (`engine:` in the "
            "config, or --engine)"
        )
    backends = importlib.import_module("agent.backends")
    try:
        found: type[Backend] = getattr(backends, known.backend)
    except (AttributeError, ImportError) as exc:
        raise DeveloperError(
            f"the {engine} engine is not available in this version of llama-agent "
            f"(agent.backends has no {known.backend}); use engine: ollama, or upgrade "
            "llama-agent"
        ) from exc
    return found


def connect(
    engine: str = "ollama",
    hosts: Sequence[str | None] = (None,),
    *,
    concurrency: int | None = None,
    **backend_kwargs: Any,
) -> Backend:
    """The backend for `hosts` of `engine`: its own backend for one host, a `PoolBackend` for
    several. `concurrency`: at most this many requests in flight per host. `backend_kwargs` go
    to each host's backend (`api_key`, `timeouts`, ...); `api_key=None` is left out, as
    `OllamaBackend` takes no key."""
    hosts = list(hosts) or [None]
    if len(hosts) == 1:
        cls = engine_backend(engine)
        return cls(hosts[0], concurrency=concurrency, **_kwargs(engine, backend_kwargs))  # type: ignore[call-arg]
    if any(host is None for host in hosts):
        raise DeveloperError("a pool of hosts needs every host's URL (one is empty)")
    return PoolBackend.of(
        engine, [h for h in hosts if h], concurrency=concurrency, **backend_kwargs
    )


def _kwargs(engine: str, given: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(given)
    if kwargs.get("api_key", "") is None:
        del kwargs["api_key"]
    if engine == "ollama" and "api_key" in kwargs:
        raise DeveloperError(
            "Ollama takes no API key; leave out the key (api_key_env) or put a proxy that "
            "checks it in front of Ollama"
        )
    return kwargs


# --- the hosts ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HostState:
    """One host as the pool sees it now (for `llama-agent check`, logs and tests)."""

    url: str
    healthy: bool  # takes requests now (False: out until `out_for` seconds from now)
    in_flight: int  # requests streaming from it now
    served: int  # requests it was given so far
    failures: int  # consecutive failures (0 after a success)
    out_for: float  # seconds before it is probed again (0 when healthy)
    last_error: str  # why it last failed ("" if never)


class _Host:
    """A host's backend and the pool's bookkeeping about it (mutable, loop-independent)."""

    def __init__(self, backend: Backend, url: str) -> None:
        self.backend = backend
        self.url = url
        self.in_flight = 0
        self.served = 0
        self.failures = 0
        self.out_until = 0.0  # on the pool's clock: out of the pool until then
        self.probing = False
        self.last_error = ""

    def out(self, now: float) -> bool:
        return self.out_until > now

    def state(self, now: float) -> HostState:
        return HostState(
            url=self.url,
            healthy=not self.out(now),
            in_flight=self.in_flight,
            served=self.served,
            failures=self.failures,
            out_for=max(0.0, self.out_until - now),
            last_error=self.last_error,
        )


def _host_failure(exc: BackendError, *, streamed: bool, deadline: float | None) -> str | None:
    """Why `exc` says the host (not the request) failed, or None: then it is raised as it is."""
    if isinstance(exc, BackendTimeoutError):
        if deadline is not None and anyio.current_time() >= deadline:
            return None  # the caller's deadline: no host would have done better
        # Before the first chunk: the host did not take the request. After it, the timeout
        # cannot be told from `Timeouts.total` (an answer too long), so it is not the host's.
        return None if streamed else "timed out before the first chunk"
    if isinstance(exc, BackendUnreachableError):
        return "unreachable"
    if isinstance(exc, StreamError):
        return "its stream failed"
    if isinstance(exc, ServerBusyError):
        return "busy (503) after every retry"
    if isinstance(exc, BackendResponseError) and (exc.status_code or 0) >= 500:
        return f"answered {exc.status_code}"
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).split(". ")[0].strip() or type(exc).__name__


# --- the pool ----------------------------------------------------------------------------------


class PoolBackend(Backend):
    """Several hosts of one engine behind one `Backend` (see the module's docstring).

    ```python
    pool = PoolBackend([OllamaBackend(h) for h in ("gpu1:11434", "gpu2:11434")])
    pool = PoolBackend.of("vllm", ["http://gpu1:8000", "http://gpu2:8000"], api_key=key)
    async with Agent("llama3.1:70b", backend=pool) as agent:
        ...
    ```

    `concurrency`: at most this many requests in flight per host (None: no limit here; each
    host backend may have its own). A request waits for room on its run's host, or on any
    host for a new run, within its deadline. `backoff_base`, `backoff_max`: how long a failed
    host stays out (seconds, doubling with each consecutive failure, jittered). `probe`: ask a
    host that is due back (`ENGINES[engine].health`) before giving it requests; False gives it
    the next request on trial instead. `clock`: what the backoffs are timed by (tests). The
    pool closes the host backends in `aclose()`.
    """

    takes_deadline: ClassVar[bool] = True

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        engine: str | None = None,
        concurrency: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        probe: bool = True,
        max_runs: int = 65536,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise DeveloperError("PoolBackend needs at least one host backend")
        if concurrency is not None and concurrency < 1:
            raise DeveloperError(f"concurrency must be at least 1, not {concurrency}")
        self.engine = engine or _engine_of(backends[0])
        self.concurrency = concurrency
        self._hosts = [
            _Host(b, str(getattr(b, "url", f"host {i}"))) for i, b in enumerate(backends)
        ]
        urls = [h.url for h in self._hosts]
        if len(set(urls)) != len(urls):
            raise DeveloperError(f"a host is listed twice in the pool: {', '.join(urls)}")
        self._backoff = Retries(backoff_base=backoff_base, backoff_max=backoff_max)
        self._probe = probe
        self._runs: OrderedDict[str, _Host] = OrderedDict()  # run id → its host, newest last
        self._max_runs = max_runs
        self._turn = 0
        self._rng = rng or random.Random()
        self._clock = clock  # seconds, for the backoffs: any event loop's, or a test's
        self._changed: anyio.lowlevel.RunVar[anyio.Event | None] = anyio.lowlevel.RunVar(
            f"pool-{id(self)}", None
        )
        self.moves = 0  # requests moved to another host after a failure, so far

    @classmethod
    def of(
        cls,
        engine: str,
        hosts: Sequence[str],
        *,
        concurrency: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        **backend_kwargs: Any,
    ) -> PoolBackend:
        """A pool of `engine`'s backend (`"ollama"`, `"vllm"`, `"sglang"`, `"llamacpp"`), one
        per host, each made with `backend_kwargs` (`api_key`, `timeouts`, `retries`...)."""
        backend = engine_backend(engine)
        kwargs = _kwargs(engine, backend_kwargs)
        return cls(
            [backend(host, **kwargs) for host in hosts],  # type: ignore[call-arg]
            engine=engine,
            concurrency=concurrency,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )

    async def __aenter__(self) -> PoolBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every host's backend (all of them, even when one fails)."""
        with anyio.CancelScope(shield=True):
            async with contextlib.AsyncExitStack() as stack:
                for host in self._hosts:
                    stack.push_async_callback(host.backend.aclose)

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The host backends, in the order given."""
        return tuple(h.backend for h in self._hosts)

    @property
    def hosts(self) -> tuple[HostState, ...]:
        """Each host's state now, in the order given."""
        now = self._clock()
        return tuple(h.state(now) for h in self._hosts)

    @property
    def url(self) -> str:
        """Every host's URL, comma-separated (for messages)."""
        return ", ".join(h.url for h in self._hosts)

    def host_of(self, run: str) -> str | None:
        """The URL of the host `run` sticks to, if it has made a request."""
        host = self._runs.get(run)
        return host.url if host is not None else None

    # --- small calls -------------------------------------------------------------------------

    async def model_info(self, model: str) -> ModelInfo:
        """The model as a healthy host describes it (each host backend asks once)."""
        run = run_affinity.get()
        tried: list[str] = []
        while True:
            host = await self._pick(run, deadline=None, moving=bool(tried), take=False)
            try:
                return await host.backend.model_info(model)
            except BackendError as exc:
                why = _host_failure(exc, streamed=False, deadline=None)
                if why is None:
                    raise
                self._fail(host, why, exc)
                tried.append(host.url)

    async def version(self) -> str:
        """The engine's version on each host that answers: one value, or `url: version` pairs
        when they differ."""
        found: dict[str, str] = {}
        asked = [h for h in self._hosts if hasattr(h.backend, "version")]
        if not asked:
            return ""  # backends of an engine that has no version to tell
        for host in asked:
            ask = host.backend.version  # type: ignore[attr-defined]
            try:
                found[host.url] = str(await ask())
            except BackendError as exc:
                self._fail(host, "its version could not be read", exc)
        if not found:
            raise self._all_down()
        if len(set(found.values())) == 1:
            return next(iter(found.values()))
        return ", ".join(f"{url}: {v}" for url, v in found.items())

    # --- generate ------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        model: str,
        options: GenerateOptions,
        deadline: float | None = None,
    ) -> AsyncIterator[GenerateEvent]:
        """Stream the completion of `prompt` from the run's host (see the class docstring)."""
        # Read now, not when iteration starts: the loop sets the run only around this call.
        return self._generate(prompt, model, options, deadline, run_affinity.get())

    async def _generate(
        self,
        prompt: str,
        model: str,
        options: GenerateOptions,
        deadline: float | None,
        run: str | None,
    ) -> AsyncGenerator[GenerateEvent, None]:
        emitted: list[str] = []
        warnings: list[str] = []
        host = await self._pick(run, deadline=deadline, moving=False, take=True, notes=warnings)
        held: _Host | None = host  # counted in flight on it until released
        try:
            while True:
                streamed = False
                # Tokens streamed by hosts that failed (a chunk may hold several: count them;
                # without the tokenizer extra the estimate over-counts, the safe side here).
                before = count_tokens("".join(emitted)) if emitted else 0
                left = options.num_predict
                if left is not None:
                    left -= before
                    if left <= 0:
                        yield Done(done_reason="length", warnings=tuple(warnings))
                        return
                attempt_options = (
                    dataclasses.replace(options, num_predict=left) if emitted else options
                )
                stream = self._ask(
                    host, prompt + "".join(emitted), model, attempt_options, deadline
                )
                try:
                    try:
                        async for event in stream:
                            if isinstance(event, TextChunk):
                                streamed = True
                                emitted.append(event.text)
                                yield event
                                continue
                            host.failures = 0
                            yield self._done(event, warnings, before=before)
                            return
                    finally:
                        if isinstance(stream, AsyncGenerator):
                            await stream.aclose()  # its HTTP stream, now, not at collection
                    raise StreamError(
                        f"the stream from {host.url} for {model} ended without its final chunk"
                    )
                except BackendError as exc:
                    why = _host_failure(exc, streamed=streamed, deadline=deadline)
                    if why is None:
                        raise
                    self._fail(host, why, exc)
                    failed, held = host, None
                    self._release(failed)
                    host = held = await self._pick(run, deadline=deadline, moving=True, take=True)
                    self.moves += 1
                    chars = len("".join(emitted))
                    note = (
                        f"host {failed.url} failed ({why}: {_first_line(exc)}); "
                        + (
                            f"the answer was resumed on {host.url} after {chars} characters"
                            if chars
                            else f"the request was sent again to {host.url}"
                        )
                        + (" and the run continues there" if run is not None else "")
                    )
                    warnings.append(note)
                    logger.warning("%s", note)
        finally:
            if held is not None:
                self._release(held)

    def _ask(
        self,
        host: _Host,
        prompt: str,
        model: str,
        options: GenerateOptions,
        deadline: float | None,
    ) -> AsyncIterator[GenerateEvent]:
        backend = host.backend
        if backend.takes_deadline and deadline is not None:
            return backend.generate(prompt, model=model, options=options, deadline=deadline)  # type: ignore[call-arg]
        return backend.generate(prompt, model=model, options=options)

    @staticmethod
    def _done(event: GenerateEvent, warnings: list[str], *, before: int) -> Done:
        assert isinstance(event, Done)
        if not warnings and not before:
            return event
        # What the failed hosts generated counts too; the prompt was evaluated where it ended.
        usage = dataclasses.replace(event.usage, eval_count=event.usage.eval_count + before)
        return dataclasses.replace(event, usage=usage, warnings=(*warnings, *event.warnings))

    # --- placement -----------------------------------------------------------------------------

    async def _pick(
        self,
        run: str | None,
        *,
        deadline: float | None,
        moving: bool,
        take: bool,
        notes: list[str] | None = None,
    ) -> _Host:
        """The host for a request of `run`: its own if it is up, else the least-loaded healthy
        one (probing hosts that are due back first). With `take`, waits for room under
        `concurrency` and counts the request in flight."""
        try:
            return await self._place(run, deadline=deadline, moving=moving, take=take, notes=notes)
        except TimeoutError:
            busy = ", ".join(f"{h.url} ({h.in_flight} in flight)" for h in self._hosts)
            raise BackendTimeoutError(
                f"no host of the pool had room for the request before its deadline: {busy}. "
                "Raise the pool's concurrency per host, add hosts, or run fewer at once."
            ) from None

    async def _place(
        self,
        run: str | None,
        *,
        deadline: float | None,
        moving: bool,
        take: bool,
        notes: list[str] | None,
    ) -> _Host:
        left = None if deadline is None else max(0.0, deadline - anyio.current_time())
        with anyio.fail_after(left):
            while True:
                changed = self._event()
                sticky = self._runs.get(run) if run is not None else None
                now = self._clock()
                if sticky is not None and not sticky.out(now):
                    if not take or self._has_room(sticky):
                        return self._take(sticky, run, take)
                    await changed.wait()
                    continue
                await self._probe_due(now)
                now = self._clock()
                up = [h for h in self._hosts if not h.out(now)]
                if not up and any(h.probing for h in self._hosts):
                    await changed.wait()  # another request is probing one: wait for its answer
                    continue
                if not up:
                    raise self._all_down()
                room = [h for h in up if not take or self._has_room(h)]
                if room:
                    host = self._least_loaded(room, advance=take)
                    if sticky is not None and not moving and notes is not None:
                        note = (
                            f"{sticky.url} is out ({sticky.last_error}); the run continues on "
                            f"{host.url} from its last complete step"
                        )
                        notes.append(note)
                        logger.warning("%s", note)
                        self.moves += 1
                    return self._take(host, run, take)
                await changed.wait()

    def _least_loaded(self, hosts: list[_Host], *, advance: bool) -> _Host:
        # Ties in turn, so that an idle pool spreads new runs instead of piling on the first;
        # only requests take a turn (a `model_info` before a run's first step does not).
        count = len(self._hosts)
        order = {id(h): i for i, h in enumerate(self._hosts)}
        turn = self._turn
        self._turn += advance
        return min(hosts, key=lambda h: (h.in_flight, (order[id(h)] - turn) % count))

    def _has_room(self, host: _Host) -> bool:
        return self.concurrency is None or host.in_flight < self.concurrency

    def _take(self, host: _Host, run: str | None, take: bool) -> _Host:  # noqa: FBT001
        if run is not None:
            self._runs[run] = host
            self._runs.move_to_end(run)
            while len(self._runs) > self._max_runs:
                self._runs.popitem(last=False)  # the oldest runs: long finished
        if take:
            host.in_flight += 1
            host.served += 1
        return host

    def _release(self, host: _Host) -> None:
        host.in_flight -= 1
        self._event().set()  # wake the requests waiting for room
        self._changed.set(None)

    def _event(self) -> anyio.Event:
        event = self._changed.get()
        if event is None:
            event = anyio.Event()
            self._changed.set(event)
        return event

    # --- health --------------------------------------------------------------------------------

    def _fail(self, host: _Host, why: str, exc: BaseException) -> None:
        now = self._clock()
        if host.out(now):
            # The other requests in flight when it failed: one outage, one step of the backoff.
            logger.debug("host %s (already out): %s: %s", host.url, why, _first_line(exc))
            return
        host.failures += 1
        wait = self._backoff.backoff(host.failures, self._rng)
        host.out_until = now + wait
        host.last_error = f"{why}: {_first_line(exc)}"
        logger.warning("host %s out for %.1f s: %s", host.url, wait, host.last_error)
        self._event().set()
        self._changed.set(None)

    async def _probe_due(self, now: float) -> None:
        """Probe the hosts whose time out is over (one prober each); back in if they answer."""
        for host in self._hosts:
            if host.out_until == 0.0 or host.out(now) or host.probing:
                continue
            if not self._probe:
                host.out_until = 0.0  # back on trial: its next request tells
                continue
            host.probing = True
            try:
                why = await _probe(host, ENGINES.get(self.engine))
            finally:
                host.probing = False
            if why is None:
                logger.info("host %s answers again: back in the pool", host.url)
                host.out_until = 0.0
            else:
                host.failures += 1
                host.out_until = self._clock() + self._backoff.backoff(host.failures, self._rng)
                host.last_error = f"probe failed: {why}"
            self._event().set()
            self._changed.set(None)

    def _all_down(self) -> BackendUnreachableError:
        hosts = "; ".join(f"{h.url}: {h.last_error or 'out'}" for h in self._hosts)
        return BackendUnreachableError(
            self.url,
            f"every host of the pool is out: {hosts}",
            advice="Start the servers (or fix what their errors say), or point --host at "
            "running ones; a host is tried again once its backoff ends "
            f"(up to {self._backoff.backoff_max:g} s).",
        )


def _engine_of(backend: Backend) -> str:
    name = type(backend).__name__
    return next((e.name for e in ENGINES.values() if e.backend == name), "")


PROBE_TIMEOUT = 5.0
"""Seconds a probe of a host that is due back may take."""


async def _probe(host: _Host, engine: Engine | None) -> str | None:
    """None when the host answers its engine's health endpoint with 200; else why not. A host
    of an engine the pool does not know is not probed: its next request tells."""
    if engine is None:
        return None
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(host.url + engine.health) as response,
        ):
            await response.read()
            if response.status != 200:
                return f"GET {engine.health} answered {response.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"GET {engine.health}: {type(exc).__name__} {exc}".strip()
    return None
