"""OpenTelemetry spans of a run, named and attributed after the GenAI semantic conventions.

Only `opentelemetry-api` is used: with no SDK installed (or none configured) every span is the
API's non-recording span, and the loop checks `is_recording()` once per span before computing
any attribute, so the hot path pays a few attribute lookups per step. An application (or
`opentelemetry-instrument`) that installs a tracer provider gets, per run:

    invoke_agent {agent name}            INTERNAL, the whole run
    ├── text_completion {model}          CLIENT, one per model request
    └── execute_tool {tool}              INTERNAL, one per call that runs

The run's span is a child of whatever span is current where the run starts (a request handler's,
say). Each model request's span is current while the backend sends and reads it, and each tool
call's while the tool runs, so HTTP client spans and a tool's own spans nest beneath them.

Prompt and completion text, tool arguments and results are recorded only when the user opts in
with OpenTelemetry's content-capture variable, `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
(`true`, `span_only` or `span_and_event`), as `gen_ai.input.messages`, `gen_ai.output.messages`,
`gen_ai.system_instructions`, `gen_ai.tool.call.arguments` and `gen_ai.tool.call.result` (JSON
strings). Never by default: they may hold personal data.

`error.type` values: the exception's class name for a `RunError` or a tool that raised,
`timeout` (the run's deadline, or a tool's own timeout), `cancelled` (the run was closed or
cancelled), `tool_error` (a tool that failed without an exception). Limits that end a run
(`step_limit`, ...) are not errors; every run span carries `llama_agent.run.status`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from agent.backends import Backend, Done, GenerateOptions
from agent.errors import RunError
from agent.llama3 import Message

if TYPE_CHECKING:
    from ._calls import Slot
    from ._run import RunSpec, RunState

T = TypeVar("T")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"true", "1", "yes", "span_only", "span_and_event"})

# A proxy tracer: it follows a provider installed after this import (opentelemetry-instrument
# installs one before the program runs, an application may do it any time).
_TRACER = trace.get_tracer("llama_agent")


def capture_content() -> bool:
    """Whether the user opted in to prompt and completion text on spans."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_ON


class RunTrace:
    """The spans of one run: its `invoke_agent` span, and the children it starts."""

    __slots__ = ("_capture", "_context", "_provider", "_server", "deadline", "recording", "span")

    def __init__(self, spec: RunSpec, state: RunState, *, name: str, deadline: float) -> None:
        self.deadline = deadline
        self.span = _TRACER.start_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL)
        self.recording = self.span.is_recording()
        self._capture = False
        self._context: otel_context.Context | None = None
        self._provider = ""
        self._server: tuple[str, int] | None = None
        if not self.recording:
            return
        self._capture = capture_content()
        self._context = trace.set_span_in_context(self.span)
        self._provider = _provider(spec.backend)
        self._server = _server(spec.backend)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": self._provider,
            "gen_ai.agent.name": name,
            "gen_ai.request.model": spec.model,
            "gen_ai.conversation.id": state.run_id,
            **_server_attributes(self._server),
            **_request_attributes(spec.options),
        }
        if self._capture:
            system = [m for m in state.messages if m.role == "system"]
            if system:
                attributes["gen_ai.system_instructions"] = _json(
                    [{"type": "text", "content": m.content} for m in system]
                )
            attributes["gen_ai.input.messages"] = _json(_messages(state.messages))
        self.span.set_attributes(attributes)

    def end(self, state: RunState) -> None:
        """End the run's span with the run's outcome (a run never finished was cancelled)."""
        if self.recording:
            status = state.status or "cancelled"
            total = state.usage.total
            self.span.set_attributes(
                {
                    "llama_agent.run.status": status,
                    "gen_ai.usage.input_tokens": total.prompt_eval_count,
                    "gen_ai.usage.output_tokens": total.eval_count,
                }
            )
            if state.exception is not None:
                _error(self.span, type(state.exception).__name__, str(state.exception))
            elif status in ("cancelled", "timeout"):
                _error(self.span, status, f"the run ended: {status}")
            if self._capture and state.answer:
                self.span.set_attribute(
                    "gen_ai.output.messages", _json([_output(state.answer, [], state.status)])
                )
        self.span.end()

    # --- model requests -----------------------------------------------------------------------

    def request(self, spec: RunSpec, messages: Sequence[Message]) -> RequestTrace:
        """The span of one model request, started now."""
        if not self.recording:
            return _NOT_RECORDING
        span = _TRACER.start_span(
            f"text_completion {spec.model}", context=self._context, kind=SpanKind.CLIENT
        )
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "text_completion",
            "gen_ai.provider.name": self._provider,
            "gen_ai.request.model": spec.model,
            **_server_attributes(self._server),
            **_request_attributes(spec.options),
        }
        if self._capture:
            attributes["gen_ai.input.messages"] = _json(_messages(messages))
        span.set_attributes(attributes)
        return RequestTrace(span, capture=self._capture)

    # --- tool calls ---------------------------------------------------------------------------

    def tool(self, slot: Slot) -> AbstractContextManager[None]:
        """The span of one call while it runs; it is the current span inside, so the tool's own
        spans nest beneath it. Wraps an await that holds no `yield` (its context is reset in
        the task that set it)."""
        return self._tool(slot) if self.recording else _NOTHING

    @contextmanager
    def _tool(self, slot: Slot) -> Iterator[None]:
        assert slot.tool is not None
        span = _TRACER.start_span(
            f"execute_tool {slot.tool.name}", context=self._context, kind=SpanKind.INTERNAL
        )
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": slot.tool.name,
            "gen_ai.tool.call.id": slot.call.id,
            "gen_ai.tool.description": slot.tool.description,
            "gen_ai.tool.type": "function",
        }
        if self._capture and slot.bound is not None:
            attributes["gen_ai.tool.call.arguments"] = _json(slot.bound.arguments)
        span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span, self._context))
        try:
            yield
        except BaseException:
            # Stopped from outside: the run's deadline, or the run was cancelled or closed.
            timeout = anyio.current_time() >= self.deadline
            _error(span, "timeout" if timeout else "cancelled", "the call was stopped")
            raise
        else:
            result = slot.result
            if result is not None and result.is_error:
                _error(span, _tool_error_type(result.exception), result.text)
            elif result is not None and self._capture:
                span.set_attribute("gen_ai.tool.call.result", result.text)
        finally:
            otel_context.detach(token)
            span.end()


class RequestTrace:
    """The span of one model request (a no-op when nothing records)."""

    __slots__ = ("_capture", "_context", "span")

    def __init__(self, span: Span | None, *, capture: bool = False) -> None:
        self.span = span
        self._capture = capture
        self._context = trace.set_span_in_context(span) if span is not None else None

    async def current(self, awaitable: Awaitable[T]) -> T:
        """`await awaitable` with the request's span as the current span (so an instrumented
        HTTP client's spans nest beneath it). Only for a recording span: the loop skips it
        otherwise, so a step pays nothing per chunk."""
        assert self._context is not None
        token = otel_context.attach(self._context)
        try:
            return await awaitable
        finally:
            otel_context.detach(token)

    def done(self, done: Done, *, completion: str, calls: Sequence[Any] = ()) -> None:
        """End the span with what the server reported."""
        if self.span is None:
            return
        self.span.set_attributes(
            {
                "gen_ai.usage.input_tokens": done.usage.prompt_eval_count,
                "gen_ai.usage.output_tokens": done.usage.eval_count,
                "gen_ai.response.finish_reasons": (done.done_reason,),
            }
        )
        if self._capture:
            self.span.set_attribute(
                "gen_ai.output.messages", _json([_output(completion, calls, done.done_reason)])
            )
        self.span.end()

    def fail(self, exc: BaseException, *, timeout: bool = False) -> None:
        """End the span of a request that did not complete (`timeout`: the run's deadline)."""
        if self.span is None:
            return
        if isinstance(exc, RunError):
            _error(self.span, type(exc).__name__, str(exc))
        elif timeout:
            _error(self.span, "timeout", "the run's deadline passed during the request")
        else:  # cancelled or closed
            _error(self.span, "cancelled", "the request was stopped")
        self.span.end()


_NOT_RECORDING = RequestTrace(None)
_NOTHING = nullcontext()


# --- attributes -------------------------------------------------------------------------------


def _error(span: Span, kind: str, description: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR, description)


def _tool_error_type(exc: BaseException | None) -> str:
    if exc is None:
        return "tool_error"
    if isinstance(exc.__cause__, TimeoutError):  # the tool's own timeout (see agent.toolkit)
        return "timeout"
    return type(exc).__name__


def _provider(backend: Backend) -> str:
    """`gen_ai.provider.name`: a backend's own `provider_name`, else from its class name
    (`OllamaBackend` is `ollama`)."""
    named = getattr(backend, "provider_name", None)
    if isinstance(named, str) and named:
        return named
    return type(backend).__name__.removesuffix("Backend").lower() or "unknown"


def _server(backend: Backend) -> tuple[str, int] | None:
    url = getattr(backend, "url", None)
    return _split(url) if isinstance(url, str) else None


@functools.lru_cache(maxsize=64)
def _split(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _server_attributes(server: tuple[str, int] | None) -> dict[str, Any]:
    if server is None:
        return {}
    return {"server.address": server[0], "server.port": server[1]}


def _request_attributes(options: GenerateOptions) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, value in (
        ("gen_ai.request.temperature", options.temperature),
        ("gen_ai.request.top_p", options.top_p),
        ("gen_ai.request.top_k", options.top_k),
        ("gen_ai.request.seed", options.seed),
        ("gen_ai.request.max_tokens", options.num_predict),
    ):
        if value is not None:
            attributes[key] = value
    if options.stop:
        attributes["gen_ai.request.stop_sequences"] = tuple(options.stop)
    return attributes


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the conventions' shape (`role`, `parts`); the system text goes in
    `gen_ai.system_instructions`."""
    shaped: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        parts: list[dict[str, Any]]
        if message.role in ("tool", "ipython"):
            parts = [
                {
                    "type": "tool_call_response",
                    "id": message.tool_call_id,
                    "response": message.content,
                }
            ]
            shaped.append({"role": "tool", "parts": parts})
            continue
        parts = [{"type": "text", "content": message.content}] if message.content else []
        parts.extend(_call_parts(message.tool_calls))
        shaped.append({"role": message.role, "parts": parts})
    return shaped


def _call_parts(calls: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": dict(c.arguments)}
        for c in calls
    ]


def _output(text: str, calls: Sequence[Any], finish_reason: str | None) -> dict[str, Any]:
    parts = [{"type": "text", "content": text}] if text else []
    parts.extend(_call_parts(calls))
    return {"role": "assistant", "parts": parts, "finish_reason": finish_reason or "stop"}
