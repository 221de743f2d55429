"""Run one validated call: the run context, deadline, results as text, errors as results.

Sync tools run in worker threads under a capacity limiter, async tools in a task of their own
(see `_abandon`), both under the tool's timeout. Cancellation (a deadline, or the run being
cancelled) reaches an async tool at its next `await`. A thread cannot be interrupted from
outside: the call is *abandoned*, so the caller gets its timeout result or its cancellation at
once, the limiter slot is freed, and the thread runs on until the function returns, its result
discarded. Sync tools that may run long should call `anyio.from_thread.check_cancelled()` now
and then to stop early once abandoned. An async tool that ignores its cancellation is abandoned
the same way, `ABANDON_AFTER` seconds later.

Whatever a tool raises becomes the call's error result, `SystemExit` included; only
cancellation and `KeyboardInterrupt` go through (`escapes` says why).

Failures and timeouts are logged on the `agent.tools` logger as one WARNING line naming the tool
and the error (an expected failure, such as a search without network, is not a crash); the
traceback follows at DEBUG. The model only ever sees the one-line error text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from anyio.lowlevel import RunVar
from pydantic_core import PydanticSerializationError, to_json

from agent.errors import DeveloperError, ModelError, ToolExecutionError
from agent.toolkit._abandon import Outcome, in_task, in_thread, refusal

if TYPE_CHECKING:
    from agent.toolkit._tool import Tool

DepsT = TypeVar("DepsT")


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
