"""Running a tool so that its caller can walk away: worker threads and tasks that outlive their
deadline are abandoned, counted and capped; an async tool that blocks the event loop is named.

Python cannot stop a thread, nor an async function that catches its cancellation and carries on.
So a sync tool runs in a worker thread and an async tool (on asyncio) in a task of its own, and
the caller only waits for them: at the tool's timeout, or when the caller is cancelled, the
thread is abandoned at once and the task is cancelled and given `ABANDON_AFTER` seconds to end
before it is abandoned too. Either runs on until it returns, its result discarded.

Abandoned calls still running are counted per tool and in all (`set_abandoned_limit`): past
either cap the tool's calls are refused, so hung calls cannot pile up threads or tasks without
bound. A call's count is released when it finally returns.

An async tool that calls blocking code holds the whole event loop, and nothing can pre-empt it:
each step of its coroutine is timed, and a step over `BLOCKED_LOOP_WARNING` seconds is logged
with the tool's name, by a watchdog thread while it lasts and once more when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from agent.errors import DeveloperError

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

    At `time_limit` the task is cancelled and the outcome is a timeout; when the caller is
    cancelled, so is the task, and the cancellation goes on. Either way the task gets
    `ABANDON_AFTER` seconds to end; one that swallows its cancellation is abandoned
    (`on_abandon` is told when the caller was cancelled). Other backends await the function in
    place, under the timeout.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): no task to walk away from
        return await _in_place(name, function, time_limit=time_limit)
    ticket = _Ticket(name)
    ticket.start()
    outcome = Outcome()
    done = anyio.Event()
    # Stopping the task cancels `stop` (not `task.cancel()`: see `_stop`); abandoning it shields
    # `unwatched`, or anyio would cancel the tool at every await for as long as it runs on.
    stop, unwatched = anyio.CancelScope(), anyio.CancelScope()

    async def run() -> None:
        try:
            with stop, unwatched:
                outcome.value = await _Watched(name, function())
        except BaseException as exc:  # its own cancellation included: the caller sorts it out
            outcome.error = exc
        finally:
            ticket.finish()
            done.set()

    task = loop.create_task(run(), name=f"tool {name}")
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


_tasks: set[asyncio.Task[None]] = set()


async def _stop(stop: anyio.CancelScope, unwatched: anyio.CancelScope, done: anyio.Event) -> bool:
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


class _Watched:
    """Awaits a coroutine step by step (as `await` would), timing each step: a step is the
    tool's own code between two awaits, which holds the event loop until it yields."""

    def __init__(self, name: str, coroutine: Awaitable[Any]) -> None:
        self._name = name
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._coroutine.__await__()
        send: Any = None
        throw: BaseException | None = None
        while True:
            began = time.monotonic()
            _watchdog.enter(self, self._name, began)
            try:
                yielded = steps.throw(throw) if throw is not None else steps.send(send)
            except StopIteration as stop:
                return stop.value
            finally:
                _watchdog.leave(self)
                held = time.monotonic() - began
                if held > BLOCKED_LOOP_WARNING:
                    logger.warning(_blocked_text(self._name, held, ended=True))
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
    """A daemon thread that names an async tool while it holds the event loop too long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[int, tuple[str, float]] = {}
        self._warned: set[int] = set()
        self._thread: threading.Thread | None = None

    def enter(self, owner: object, name: str, began: float) -> None:
        with self._lock:
            self._steps[id(owner)] = (name, began)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="llama-agent loop watchdog", daemon=True
                )
                self._thread.start()

    def leave(self, owner: object) -> None:
        with self._lock:
            self._steps.pop(id(owner), None)
            self._warned.discard(id(owner))

    def _watch(self) -> None:
        while True:
            time.sleep(BLOCKED_LOOP_WARNING / 4)
            now = time.monotonic()
            with self._lock:
                late = [
                    (key, name, now - began)
                    for key, (name, began) in self._steps.items()
                    if now - began > BLOCKED_LOOP_WARNING and key not in self._warned
                ]
                self._warned.update(key for key, _, _ in late)
            for _, name, held in late:
                logger.warning(_blocked_text(name, held, ended=False))


_watchdog = _Watchdog()
