"""Run one validated call: the run context, deadline, results as text, errors as results.

Sync tools run in worker threads under a capacity limiter, async tools in a task of their own
(`in_task`), both under the tool's timeout; an async tool whose code has no `await` cannot be
stopped before it returns anyway, and just runs (`cannot_suspend`). Cancellation (a deadline,
or the run being cancelled) reaches an async tool at its next `await`. A thread cannot be
interrupted from outside: the call is *abandoned*, so the caller gets its timeout result or its
cancellation at once, the limiter slot is freed, and the thread runs on until the function
returns, its result discarded. Sync tools that may run long should call
`anyio.from_thread.check_cancelled()` now and then to stop early once abandoned. An async tool
that ignores its cancellation is abandoned the same way, `ABANDON_AFTER` seconds later.

Whatever a tool raises becomes the call's error result, `SystemExit` included; only
cancellation and `KeyboardInterrupt` go through (`escapes` says why).

Failures and timeouts are logged on the `agent.tools` logger as one WARNING line naming the tool
and the error (an expected failure, such as a search without network, is not a crash); the
traceback follows at DEBUG. The model only ever sees the one-line error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dis
import functools
import itertools
import logging
import sys
import threading
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from pydantic_core import PydanticSerializationError, to_json

from agent._frozen import stored_at_once
from agent.errors import DeveloperError, ModelError, ToolExecutionError

if TYPE_CHECKING:
    from agent.toolkit._tool import Tool

DepsT = TypeVar("DepsT")
T = TypeVar("T")


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class RunContext(Generic[DepsT]):
    """What the runtime injects into a tool parameter annotated `RunContext[...]`.

    The parameter is never shown to the model. `deps` is whatever the program passed to
    `Agent.run(..., deps=...)`: a database handle, the user id, an HTTP client.
    """

    deps: DepsT
    run_id: str = ""
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class BoundCall:
    """Arguments that passed a tool's schema, made by `Tool.validate`.

    - `arguments`: the JSON-level dict after coercions (what to log, or show in events).
    - `coercions`: each repair made, human-readable: `argument 'b': "10" -> 10`.
    - `values`: the Python values the function receives (pydantic models, enums, ...); `None`
      when the call was built by hand, and `Tool.execute` then converts `arguments` itself.
    """

    tool: Tool[..., Any]
    arguments: Mapping[str, Any]
    coercions: tuple[str, ...] = ()
    values: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What a tool call gave.

    - `text`: what the model sees: a string result as it is; anything else as compact JSON; an
      error's message. Capped at the tool's `max_output` with a visible marker.
    - `is_error`: the tool raised, timed out, or could not be called.
    - `exception` / `traceback`: for the program (events, logs), never shown to the model.
    - `duration`: seconds, conversion and execution included.
    - `truncated`: `text` was cut to `max_output`.
    """

    text: str
    is_error: bool = False
    exception: BaseException | None = None
    traceback: str | None = None
    duration: float = 0.0
    truncated: bool = False


DEFAULT_THREAD_LIMIT = 32
logger = logging.getLogger("agent.tools")
_thread_limit = DEFAULT_THREAD_LIMIT
# One limiter per event loop: anyio primitives belong to the loop that made them.
_limiter: RunVar[anyio.CapacityLimiter] = RunVar("llama_agent_tool_threads")


def set_thread_limit(limit: int) -> None:
    """Set how many sync tools may run in worker threads at once (default 32), in every event
    loop, the current one included."""
    global _thread_limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DeveloperError(
            f"set_thread_limit({limit!r}): the limit must be an integer of at least 1 (how many "
            f"sync tools may run in worker threads at once; default {DEFAULT_THREAD_LIMIT}); "
            "pass a positive integer"
        )
    _thread_limit = limit
    # No limiter yet in this loop, or no loop at all (RuntimeError): made with the new limit.
    with contextlib.suppress(LookupError, RuntimeError):
        _limiter.get().total_tokens = limit


def tool_thread_limiter() -> anyio.CapacityLimiter:
    """The current event loop's limiter for sync tools (used when `execute` gets no `limiter=`)."""
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_thread_limit)
        _limiter.set(limiter)
        return limiter


async def execute_call(
    tool: Tool[..., Any],
    call: BoundCall,
    *,
    context: RunContext[Any] | None,
    limiter: anyio.CapacityLimiter | None,
    on_abandon: Callable[[], object] | None = None,
) -> ToolResult:
    """Run `call` with `tool`'s deadline; whatever the tool raises becomes an error result, but
    cancellation and `KeyboardInterrupt` (see `escapes`)."""
    start = time.perf_counter()
    name = tool.name
    refused = refusal(name)
    if refused is not None:
        logger.warning("tool %s refused: too many of its calls were abandoned", name)
        error = ToolExecutionError(refused)
        return _result(refused, tool, is_error=True, exception=error, duration=0.0)
    try:
        function = _prepared(tool, call, context)
    except BaseException as exc:
        if escapes(exc):
            raise
        outcome = Outcome(error=exc)
    else:
        if tool.is_async:
            outcome = await in_task(name, function, time_limit=tool.timeout, on_abandon=on_abandon)
        else:
            outcome = await in_thread(
                name, function, time_limit=tool.timeout, limiter=limiter or tool_thread_limiter()
            )
    duration = time.perf_counter() - start
    if outcome.timed_out:
        error = _timeout_error(name, tool.timeout, abandoned=outcome.abandoned and tool.is_async)
        logger.warning("tool %s timed out after %g s", name, tool.timeout)
        return _result(str(error), tool, is_error=True, exception=error, duration=duration)
    failure = outcome.error
    if failure is not None:
        if escapes(failure):
            raise failure
        _log_failure(f"tool {name} failed", failure)
        return _result(
            _error_text(name, failure),
            tool,
            is_error=True,
            exception=failure,
            traceback="".join(traceback.format_exception(failure)),
            duration=duration,
        )
    try:
        text = result_text(outcome.value)
    except Exception as exc:  # a __str__ that raises
        _log_failure(f"tool {name}: its result cannot be shown as text", exc)
        return _result(
            f"{name} failed: its result cannot be shown as text ({type(exc).__name__})",
            tool,
            is_error=True,
            exception=exc,
            traceback="".join(traceback.format_exception(exc)),
            duration=duration,
        )
    return _result(text, tool, is_error=False, duration=duration)


def escapes(exc: BaseException) -> bool:
    """What a tool may raise through `execute`: KeyboardInterrupt (the user's Ctrl-C, which
    lands in whatever code runs when it comes: swallowed, the program would go on after being
    told to stop) and cancellation of the caller's own (the way deadlines and `task.cancel()`
    work; a cancellation the tool raised by itself, in a task of its own, is its error).
    SystemExit and the rest, and groups of them, become the call's error."""
    if isinstance(exc, BaseExceptionGroup):
        return any(escapes(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def _log_failure(what: str, exc: BaseException) -> None:
    """One line per failure: an expected one (a search without network) is no crash, and a
    traceback on the terminal says it is. The traceback is there for who asks for DEBUG."""
    logger.warning("%s: %s", what, _error_name(exc))
    logger.debug("%s", what, exc_info=exc)


def _error_name(exc: BaseException) -> str:
    """`ConnectionError: no network`, on one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _prepared(
    tool: Tool[..., Any], call: BoundCall, context: RunContext[Any] | None
) -> Callable[[], Any]:
    """The function with its arguments bound (positional-only ones in order, the rest by name)."""
    values = dict(call.values if call.values is not None else tool.convert(call.arguments))
    info = tool.calling
    if info.context_param is not None and not (context is None and info.context_optional):
        if context is None:
            raise ToolExecutionError(
                "the tool needs a RunContext and none was given: pass context= to "
                "Tool.execute (Agent.run does this)"
            )
        values[info.context_param] = context
    args = [values.pop(n) if n in values else info.positional_defaults[n] for n in info.positional]
    return functools.partial(tool.function, *args, **values)


def _timeout_error(name: str, timeout: float, *, abandoned: bool) -> ToolExecutionError:
    """What `raise ToolExecutionError(...) from TimeoutError(...)` would make, without raising:
    the error tree's type for the program, the TimeoutError as its cause."""
    text = f"{name} timed out after {timeout:g} s"
    if abandoned:
        text += "; it ignored being stopped and was abandoned"
    error = ToolExecutionError(text)
    error.__cause__ = TimeoutError(f"no result within {timeout:g} s")
    error.__suppress_context__ = True
    return error


def _error_text(name: str, exc: BaseException) -> str:
    if isinstance(exc, ModelError):
        return str(exc)  # written for the model, tool name included
    if isinstance(exc, ToolExecutionError):
        return f"{name} failed: {exc}"  # a tool speaking to the model: no exception type
    message = str(exc)
    kind = type(exc).__name__
    return f"{name} failed: {kind}: {message}" if message else f"{name} failed: {kind}"


def result_text(value: Any) -> str:
    """A result as the model sees it: a string as it is, anything else as compact JSON
    (pydantic models, dataclasses, dicts, lists, numbers, None...), or `str()` when it has no
    JSON form."""
    if isinstance(value, str):
        return value
    try:
        return to_json(value).decode()
    except PydanticSerializationError:
        if isinstance(value, dict | list | tuple | set | frozenset):
            return to_json(value, fallback=str).decode()
        return str(value)


def cap(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to at most `limit` characters, a marker saying how much was cut included."""
    if len(text) <= limit:
        return text, False
    keep = limit
    for _ in range(3):  # the marker's length depends on the number it prints
        marker = f"\n[truncated: {len(text) - keep:,} of {len(text):,} characters cut]"
        keep = max(0, limit - len(marker))
    marker = f"\n[truncated: {len(text) - keep:,} of {len(text):,} characters cut]"
    return text[:keep] + marker, True


def _result(
    text: str,
    tool: Tool[..., Any],
    *,
    is_error: bool,
    duration: float,
    exception: BaseException | None = None,
    traceback: str | None = None,
) -> ToolResult:
    shown, truncated = cap(text, tool.max_output)
    return ToolResult(
        text=shown,
        is_error=is_error,
        exception=exception,
        traceback=traceback,
        duration=duration,
        truncated=truncated,
    )


logger = logging.getLogger("agent.tools")

ABANDON_AFTER = 1.0  # seconds a cancelled async tool gets to end before it is abandoned
BLOCKED_LOOP_WARNING = 0.5  # seconds one step of an async tool may hold the event loop
DEFAULT_ABANDONED_PER_TOOL = 8
DEFAULT_ABANDONED_TOTAL = 32


@dataclass(kw_only=True)
class Outcome:
    """How a call ended: its value, or what it raised (anything: the caller sorts it out)."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False  # its timeout passed before it returned
    abandoned: bool = False  # it ignored being stopped and runs on, unwatched


# --- the count of abandoned calls -----------------------------------------------------------


class _Registry:
    """Abandoned calls still running, per tool name; thread-safe (threads release their own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.per_tool = DEFAULT_ABANDONED_PER_TOOL
        self.total = DEFAULT_ABANDONED_TOTAL

    def refusal(self, name: str) -> str | None:
        """Why a new call of `name` is refused, or None."""
        if not self.counts:  # nothing abandoned (the usual case): no lock, no sum
            return None
        with self.lock:
            mine, everyone = self.counts.get(name, 0), sum(self.counts.values())
        if mine >= self.per_tool:
            held = f"{mine} earlier calls of {name} are still running"
        elif everyone >= self.total:
            held = f"{everyone} earlier tool calls are still running"
        else:
            return None
        return (
            f"{name} is unavailable: {held} after their time limit (at most {self.per_tool} per "
            f"tool and {self.total} in all may be left running). Do not call {name} again "
            "now: answer with what you have, or use another tool."
        )

    def add(self, name: str) -> int:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            return self.counts[name]

    def release(self, name: str) -> None:
        with self.lock:
            left = self.counts.get(name, 0) - 1
            if left > 0:
                self.counts[name] = left
            else:
                self.counts.pop(name, None)


_registry = _Registry()


def set_abandoned_limit(*, per_tool: int | None = None, total: int | None = None) -> None:
    """Set how many abandoned calls (threads or tasks still running past their deadline) may be
    left per tool (default 8) and in the whole process (default 32) before calls are refused."""
    for what, limit in (("per_tool", per_tool), ("total", total)):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise DeveloperError(
                f"set_abandoned_limit({what}={limit!r}): the limit must be an integer of at least "
                "1 (how many calls that ignored their deadline may be left running before the "
                "tool is refused); pass a positive integer"
            )
    with _registry.lock:
        _registry.per_tool = per_tool or _registry.per_tool
        _registry.total = total or _registry.total


def abandoned_calls() -> dict[str, int]:
    """Abandoned calls still running, per tool name (a snapshot; for monitoring and tests)."""
    with _registry.lock:
        return dict(_registry.counts)


def refusal(name: str) -> str | None:
    """Why a call of tool `name` is refused now (too many abandoned calls), or None."""
    return _registry.refusal(name)


class _Ticket:
    """One call's life: pending -> running -> done; abandoned when its caller left it running."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "pending"
        self.abandoned = False

    def start(self) -> bool:
        """False when the caller already left: the call must not run at all."""
        with _registry.lock:
            if self.state == "pending":
                self.state = "running"
        return self.state == "running"

    def finish(self) -> None:
        with _registry.lock:
            self.state = "done"
            abandoned = self.abandoned
        if abandoned:
            _registry.release(self.name)

    def abandon(self) -> bool:
        """The caller stops waiting; True when the call runs on (and now counts)."""
        with _registry.lock:
            if self.state == "pending":
                self.state = "dropped"
            if self.state != "running":
                return False
            self.abandoned = True
        count = _registry.add(self.name)
        logger.warning(
            "tool %s ignored its deadline and was abandoned; it runs on (%d abandoned calls of "
            "%s still running)",
            self.name,
            count,
            self.name,
        )
        return True


# --- running a call -------------------------------------------------------------------------


async def in_thread(
    name: str, function: Callable[[], Any], *, time_limit: float, limiter: anyio.CapacityLimiter
) -> Outcome:
    """Run a sync function in a worker thread; at `time_limit` or on cancellation, abandon it."""
    ticket = _Ticket(name)

    def work() -> Outcome:
        if not ticket.start():
            return Outcome()
        try:
            return Outcome(value=function())
        except BaseException as exc:  # SystemExit too: the caller decides what escapes
            return Outcome(error=exc)
        finally:
            ticket.finish()

    outcome = Outcome(timed_out=True)
    with anyio.move_on_after(time_limit):
        try:
            outcome = await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)
        except anyio.get_cancelled_exc_class():
            outcome.abandoned = ticket.abandon()
            raise
    return outcome


async def in_task(
    name: str,
    function: Callable[[], Awaitable[Any]],
    *,
    time_limit: float,
    on_abandon: Callable[[], object] | None = None,
) -> Outcome:
    """Run an async function in a task of its own (on asyncio) that the caller can walk away from.

    The task starts eagerly: it runs in this call up to its first real wait, so a tool that
    returns without waiting for anything costs no timer and no trip through the event loop. At
    `time_limit` the task is cancelled and the outcome is a timeout; when the caller is
    cancelled, so is the task, and the cancellation goes on. Either way the task gets
    `ABANDON_AFTER` seconds to end; one that swallows its cancellation is abandoned
    (`on_abandon` is told when the caller was cancelled). Other backends await the function in
    place, under the timeout.

    A coroutine whose code cannot suspend (`cannot_suspend`: no `await` in it) runs to its end
    here at once: no task, scope or timer could stop it sooner, so it gets none. It runs in a
    context of its own all the same, and under the blocked-loop watchdog.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): no task to walk away from
        return await _in_place(name, function, time_limit=time_limit)
    context = contextvars.copy_context()
    try:
        coroutine = context.run(function)
    except BaseException as exc:  # the caller sorts it out, as an error raised in the task
        return Outcome(error=exc)
    if type(coroutine) is types.CoroutineType and cannot_suspend(coroutine.cr_code):
        return _at_once(name, coroutine, context)
    ticket = _Ticket(name)
    ticket.start()
    outcome = Outcome()
    done = asyncio.Event()
    # Stopping the task cancels `stop` (not `task.cancel()`: see `_stop`); abandoning it shields
    # `unwatched`, or anyio would cancel the tool at every await for as long as it runs on.
    scope = _scope_class()
    stop, unwatched = scope(), scope()

    async def run() -> None:
        try:
            with stop, unwatched:
                outcome.value = await _Watched(name, coroutine)
        except BaseException as exc:  # its own cancellation included: the caller sorts it out
            outcome.error = exc
        finally:
            ticket.finish()
            done.set()

    task = start_eagerly(loop, run(), name=f"tool {name}", context=context)
    if done.is_set():
        return outcome
    _tasks.add(task)  # the loop keeps weak references only; an abandoned task must live on
    task.add_done_callback(_tasks.discard)
    try:
        with anyio.move_on_after(time_limit):
            await done.wait()
    except anyio.get_cancelled_exc_class():
        if not await _stop(stop, unwatched, done) and ticket.abandon() and on_abandon is not None:
            on_abandon()
        raise
    if not done.is_set():
        outcome = Outcome(timed_out=True)
        outcome.abandoned = not await _stop(stop, unwatched, done) and ticket.abandon()
    return outcome


@functools.cache
def _scope_class() -> type[anyio.CancelScope]:
    """The asyncio backend's own cancel scope class (`in_task` runs on asyncio only): made
    directly, a scope skips `anyio.CancelScope`'s look-up of the running backend."""
    return type(anyio.CancelScope())


def start_eagerly(
    loop: asyncio.AbstractEventLoop,
    coroutine: Coroutine[Any, Any, T],
    *,
    name: str,
    context: contextvars.Context | None = None,
) -> asyncio.Task[T]:
    """A task for `coroutine` that has already run, in this call, up to its first suspension.

    What Python 3.12's `eager_start=True` does; on 3.11 the task is made first and the step is
    run in its context as the current task (so `asyncio.current_task()`, and the cancel scopes
    anyio binds to it, are the task's own), then the task drives the coroutine on from there.
    `context`: the task's (default: a copy of the current one).
    """
    if context is None:
        context = contextvars.copy_context()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coroutine, loop=loop, name=name, context=context, eager_start=True)
    caller = asyncio.current_task(loop)
    if caller is None:  # not called from a task: nothing to step in the place of
        return loop.create_task(coroutine, name=name, context=context)
    resumed = _Resumed(coroutine)
    task = loop.create_task(resumed, name=name, context=context)
    asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        context.run(resumed.first_step)
    finally:
        asyncio.tasks._leave_task(loop, task)
        asyncio.tasks._enter_task(loop, caller)
    return task


@functools.lru_cache(maxsize=1024)
def cannot_suspend(code: types.CodeType) -> bool:
    """True when a coroutine running `code` can never suspend: a coroutine only suspends at a
    yield of its own frame, and every `await`, `async for` and `async with` compiles to one."""
    return not any(i.opname == "YIELD_VALUE" for i in dis.get_instructions(code))


def _at_once(
    name: str, coroutine: Coroutine[Any, Any, Any], context: contextvars.Context
) -> Outcome:
    """Run a coroutine that cannot suspend to its end, in `context`, under the watchdog."""
    try:
        _watchdog.step(next(_keys), name, context.run, coroutine.send, None)
    except StopIteration as stop:
        return Outcome(value=stop.value)
    except BaseException as exc:  # the caller sorts it out, as an error raised in the task
        return Outcome(error=exc)
    coroutine.close()  # pragma: no cover - it yielded: `cannot_suspend` was wrong
    raise AssertionError(f"tool {name} suspended, though its code has no yield")


class _Resumed(Coroutine[Any, Any, T]):
    """A coroutine whose first step ran before its task started: the task's first `send` gets
    what that step yielded (or its return), and everything after goes to the coroutine."""

    def __init__(self, coroutine: Coroutine[Any, Any, T]) -> None:
        self._coroutine = coroutine
        self._first: Any = None  # what the first step yielded, until the task takes it
        self._pending = False
        self._ended: tuple[T] | None = None
        self._error: BaseException | None = None

    def first_step(self) -> None:
        try:
            self._first = self._coroutine.send(None)
            self._pending = True
        except StopIteration as stop:
            self._ended = (stop.value,)
        except BaseException as exc:  # raised again in the task, where it belongs
            self._error = exc

    def send(self, value: Any) -> Any:
        if self._pending:
            self._pending = False
            first, self._first = self._first, None
            return first
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._ended is not None:
            raise StopIteration(self._ended[0])
        return self._coroutine.send(value)

    def throw(self, typ: Any, value: Any = None, traceback: Any = None) -> Any:
        # Thrown before the task took the first step's yield (cancelled at once): the
        # coroutine waits where that step left it, so it gets the exception there.
        self._pending = False
        self._first = None
        if self._ended is not None or self._error is not None:
            raise typ if value is None else value
        if value is None and traceback is None:
            return self._coroutine.throw(typ)
        return self._coroutine.throw(typ, value, traceback)  # pragma: no cover - old form

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("a _Resumed coroutine is driven by its task only")


_tasks: set[asyncio.Task[None]] = set()


async def _stop(stop: anyio.CancelScope, unwatched: anyio.CancelScope, done: asyncio.Event) -> bool:
    """Cancel the task's `stop` scope and give it `ABANDON_AFTER` seconds to end; True when it
    did. Otherwise shield its `unwatched` scope: the task is no longer cancelled.

    An anyio cancel scope cancels again at each of the task's awaits until the task leaves it
    (shielded cleanup aside), as anyio code expects; `task.cancel()` is delivered once only. Once
    `anyio.run_process` waits for its process, that one cancel only starts `Process.aclose`,
    whose wait for the process is unshielded and kills it only when cancelled again: the tool
    then waited for the process to exit by itself and was abandoned.
    """
    stop.cancel()
    with anyio.CancelScope(shield=True), anyio.move_on_after(ABANDON_AFTER):
        await done.wait()
    if not done.is_set():
        unwatched.shield = True
    return done.is_set()


async def _in_place(
    name: str, function: Callable[[], Awaitable[Any]], *, time_limit: float
) -> Outcome:
    outcome = Outcome()
    with anyio.move_on_after(time_limit) as scope:
        try:
            outcome.value = await _Watched(name, function())
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            outcome.error = exc
    outcome.timed_out = scope.cancelled_caught
    return outcome


# --- a blocked event loop -------------------------------------------------------------------


_keys = itertools.count()


class _Watched:
    """Awaits a coroutine step by step (as `await` would), timing each step: a step is the
    tool's own code between two awaits, which holds the event loop until it yields."""

    def __init__(self, name: str, coroutine: Awaitable[Any]) -> None:
        self._name = name
        self._key = next(_keys)  # never reused, unlike id(): a stale entry matches nothing
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._coroutine.__await__()
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                if throw is not None:
                    yielded = _watchdog.step(self._key, self._name, steps.throw, throw)
                else:
                    yielded = _watchdog.step(self._key, self._name, steps.send, send)
            except StopIteration as stop:
                return stop.value
            try:
                send, throw = (yield yielded), None
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # passed on to the tool, as `await` does
                send, throw = None, exc


def _blocked_text(name: str, held: float, *, ended: bool) -> str:
    how = (
        f"blocked the event loop for {held:.1f} s"
        if ended
        else (f"has blocked the event loop for {held:.1f} s and still does")
    )
    return (
        f"tool {name} {how}: every other run and call in this process waited (an async tool "
        "must not call blocking code; make it a plain def, which runs in a worker thread, or "
        "use anyio.to_thread.run_sync for the blocking part)"
    )


class _Watchdog:
    """A daemon thread that names an async tool while it holds the event loop too long.

    `enter` and `leave` run at every step of every async tool, so they take no lock: each is
    one dict or set operation, atomic under the GIL, and the thread reads a copy of the dict
    (made in one C call, so it never sees the dict change size under it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # only to start the thread once
        self._steps: dict[int, tuple[str, float]] = {}
        self._warned: set[int] = set()
        self._thread: threading.Thread | None = None

    def enter(self, key: int, name: str, began: float) -> None:
        self._steps[key] = (name, began)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._watch, name="llama-agent loop watchdog", daemon=True
                    )
                    self._thread.start()

    def step(self, key: int, name: str, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, one step of async tool `name`: named while it holds the event loop
        too long, and warned about once it held it too long."""
        began = time.monotonic()
        self.enter(key, name, began)
        try:
            return call(*args)
        finally:
            self.leave(key)
            held = time.monotonic() - began
            if held > BLOCKED_LOOP_WARNING:
                logger.warning(_blocked_text(name, held, ended=True))

    def leave(self, key: int) -> None:
        self._steps.pop(key, None)
        if self._warned:
            self._warned.discard(key)

    def _watch(self) -> None:
        while True:
            time.sleep(BLOCKED_LOOP_WARNING / 4)
            now = time.monotonic()
            late = [
                (key, name, now - began)
                for key, (name, began) in self._steps.copy().items()
                if now - began > BLOCKED_LOOP_WARNING and key not in self._warned
            ]
            self._warned.update(key for key, _, _ in late)
            for _, name, held in late:
                logger.warning(_blocked_text(name, held, ended=False))


_watchdog = _Watchdog()
