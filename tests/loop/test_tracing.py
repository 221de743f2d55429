"""OpenTelemetry spans through the SDK's in-memory exporter: the tree, names, attributes,
errors, cancellation, and prompt text only on opt-in."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from agent import Limits, Tool, tool
from agent.testing import ErrorLine, Stall, answer, call_tool, sequence

from .helpers import add, call, collect, running

pytestmark = pytest.mark.anyio

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_EXPORTER = InMemorySpanExporter()


class _Switch(Sampler):
    """Records only during a test that asks for spans: the API allows one provider per process,
    and the other tests should keep running on non-recording spans, as without an SDK."""

    on = False

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP)

    def get_description(self) -> str:
        return "on during tracing tests"


_SWITCH = _Switch()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The spans ended during the test."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.delenv(CAPTURE, raising=False)
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


def _named(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@tool
def explode(reason: str) -> str:
    """Fail on purpose.

    Args:
        reason: Why.
    """
    raise ValueError(reason)


@tool
async def slow(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: How long.
    """
    await anyio.sleep(seconds)
    return "woke"


async def test_a_run_is_one_agent_span_with_a_request_span_per_step_and_a_tool_span_per_call(
    spans: InMemorySpanExporter,
) -> None:
    script = call_tool("add", {"a": 2, "b": 3}, then="It is 5.")
    async with running(script, tools=[add], name="adder") as (emu, agent):
        result = await agent.run("What is 2 + 3?")
        host, port = emu.url.removeprefix("http://").split(":")
    assert result.status == "answered"
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    requests = _named(finished, "text_completion")
    (call_span,) = _named(finished, "execute_tool")

    assert run.name == "invoke_agent adder"
    assert run.kind is SpanKind.INTERNAL
    assert run.parent is None
    assert [r.name for r in requests] == ["text_completion llama3.1"] * 2
    assert all(r.kind is SpanKind.CLIENT for r in requests)
    assert all(_parent(r) == run.context.span_id for r in [*requests, call_span])
    assert {r.context.trace_id for r in [*requests, call_span]} == {run.context.trace_id}
    assert call_span.name == "execute_tool add"
    # The call ran between the two requests.
    assert requests[0].end_time <= call_span.start_time <= call_span.end_time
    assert call_span.end_time <= requests[1].start_time

    attributes = dict(run.attributes or {})
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert attributes["gen_ai.agent.name"] == "adder"
    assert attributes["gen_ai.provider.name"] == "ollama"
    assert attributes["gen_ai.request.model"] == "llama3.1"
    assert attributes["gen_ai.conversation.id"] == result.run_id
    assert attributes["llama_agent.run.status"] == "answered"
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.total.eval_count
    assert run.status.status_code is StatusCode.UNSET

    first = dict(requests[0].attributes or {})
    usage = result.usage.steps[0]
    assert first["gen_ai.operation.name"] == "text_completion"
    assert first["gen_ai.provider.name"] == "ollama"
    assert first["gen_ai.request.model"] == "llama3.1"
    assert first["gen_ai.usage.input_tokens"] == usage.prompt_eval_count > 0
    assert first["gen_ai.usage.output_tokens"] == usage.eval_count > 0
    assert first["gen_ai.response.finish_reasons"] == ("stop",)
    assert first["server.address"] == host
    assert first["server.port"] == int(port)

    tool_attributes = dict(call_span.attributes or {})
    call_id = result.messages[1].tool_calls[0].id
    assert tool_attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.description": "Add two integers.",
        "gen_ai.tool.type": "function",
    }
    assert call_span.status.status_code is StatusCode.UNSET


async def test_no_prompt_or_completion_text_is_recorded_by_default(
    spans: InMemorySpanExporter,
) -> None:
    script = call_tool("add", {"a": 2, "b": 3}, then="It is 5.")
    async with running(script, tools=[add], system="Secret system text.") as (_, agent):
        await agent.run("my private question")
    for span in spans.get_finished_spans():
        for key, value in (span.attributes or {}).items():
            assert not key.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system_instr"))
            assert key not in ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result")
            assert "private" not in str(value)
            assert "Secret" not in str(value)


@pytest.mark.parametrize("value", ["true", "SPAN_ONLY"])
async def test_the_content_capture_variable_records_messages_arguments_and_results(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(CAPTURE, value)
    script = call_tool("add", {"a": 2, "b": 3}, then="It is 5.")
    async with running(script, tools=[add], system="Be brief.") as (_, agent):
        await agent.run("What is 2 + 3?")
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    first, second = _named(finished, "text_completion")
    (call_span,) = _named(finished, "execute_tool")
    run_attributes = dict(run.attributes or {})
    assert json.loads(str(run_attributes["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(str(run_attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 2 + 3?"}]}
    ]
    output = json.loads(str(dict(first.attributes or {})["gen_ai.output.messages"]))
    (message,) = output
    assert message["role"] == "assistant"
    assert message["parts"][0]["type"] == "tool_call"
    assert message["parts"][0]["name"] == "add"
    assert message["parts"][0]["arguments"] == {"a": 2, "b": 3}
    inputs = json.loads(str(dict(second.attributes or {})["gen_ai.input.messages"]))
    assert inputs[-1] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": message["parts"][0]["id"], "response": "5"}],
    }
    final = json.loads(str(dict(second.attributes or {})["gen_ai.output.messages"]))
    assert final[0]["parts"] == [{"type": "text", "content": "It is 5."}]
    tool_attributes = dict(call_span.attributes or {})
    assert json.loads(str(tool_attributes["gen_ai.tool.call.arguments"])) == {"a": 2, "b": 3}
    assert tool_attributes["gen_ai.tool.call.result"] == "5"


async def test_a_failing_tool_marks_its_span_with_the_exception_type(
    spans: InMemorySpanExporter,
) -> None:
    script = call_tool("explode", {"reason": "boom"}, then="It failed.")
    async with running(script, tools=[explode]) as (_, agent):
        result = await agent.run("Explode.")
    assert result.status == "answered"
    (call_span,) = _named(spans.get_finished_spans(), "execute_tool")
    assert call_span.status.status_code is StatusCode.ERROR
    assert dict(call_span.attributes or {})["error.type"] == "ValueError"
    (run,) = _named(spans.get_finished_spans(), "invoke_agent")
    assert run.status.status_code is StatusCode.UNSET  # the run went on: not an error


async def test_a_tool_that_times_out_is_a_timeout(spans: InMemorySpanExporter) -> None:
    quick = Tool.from_function(slow.function, timeout=0.2)
    script = call_tool("slow", {"seconds": 5}, then="Too slow.")
    async with running(script, tools=[quick]) as (_, agent):
        await agent.run("Sleep.")
    (call_span,) = _named(spans.get_finished_spans(), "execute_tool")
    assert dict(call_span.attributes or {})["error.type"] == "timeout"


async def test_a_server_error_marks_the_request_and_the_run(
    spans: InMemorySpanExporter,
) -> None:
    faults = [ErrorLine(after_chunks=1)]
    async with running(answer("Hello there."), emulator={"faults": faults}) as (_, agent):
        async with agent.stream("Hi") as events:
            async for _ in events:
                pass
        result = events.result
    assert result.status == "error"
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    (request,) = _named(finished, "text_completion")
    kind = type(result.exception).__name__
    for span in (run, request):
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == kind


async def test_cancelling_a_run_ends_every_open_span_as_cancelled(
    spans: InMemorySpanExporter,
) -> None:
    script = sequence(call("slow", seconds=30), "Done.<|eot_id|>")
    async with running(script, tools=[slow]) as (_, agent):
        with anyio.move_on_after(0.5):
            await agent.run("Sleep.")
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    (call_span,) = _named(finished, "execute_tool")
    for span in (run, call_span):
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "cancelled"
    assert dict(run.attributes or {})["llama_agent.run.status"] == "cancelled"


async def test_a_stream_closed_mid_request_ends_the_request_span(
    spans: InMemorySpanExporter,
) -> None:
    faults = [Stall(after_chunks=4)]
    reply = answer("Hello there, this is a long answer.")
    async with running(reply, emulator={"faults": faults}) as (_, agent):
        stream = agent.stream("Hi")
        async with stream:
            async for event in stream:
                if event.type == "text_delta":
                    break
    finished = spans.get_finished_spans()
    (request,) = _named(finished, "text_completion")
    assert dict(request.attributes or {})["error.type"] == "cancelled"
    assert len(_named(finished, "invoke_agent")) == 1


async def test_the_run_deadline_marks_the_spans_as_timeouts(
    spans: InMemorySpanExporter,
) -> None:
    script = sequence(call("slow", seconds=30), "Done.<|eot_id|>")
    async with running(script, tools=[slow], limits=Limits(run_timeout=0.5)) as (_, agent):
        result = await agent.run("Sleep.")
    assert result.status == "timeout"
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    (call_span,) = _named(finished, "execute_tool")
    for span in (run, call_span):
        assert dict(span.attributes or {})["error.type"] == "timeout"


async def test_concurrent_calls_each_get_a_span_under_the_run_with_a_task_group(
    spans: InMemorySpanExporter,
) -> None:
    from .helpers import calls

    script = sequence(calls(("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})), "Done.")
    async with running(script, tools=[add]) as (_, agent), anyio.create_task_group() as group:
        await collect(agent.stream("Add.", task_group=group))
    finished = spans.get_finished_spans()
    (run,) = _named(finished, "invoke_agent")
    tools = _named(finished, "execute_tool")
    assert len(tools) == 2
    assert {_parent(s) for s in tools} == {run.context.span_id}
    assert len({dict(s.attributes or {})["gen_ai.tool.call.id"] for s in tools}) == 2


async def test_the_run_span_is_a_child_of_the_callers_current_span(
    spans: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("test")
    async with running(answer("Hi.")) as (_, agent):
        with tracer.start_as_current_span("request handler") as outer:
            await agent.run("Hello")
    (run,) = _named(spans.get_finished_spans(), "invoke_agent")
    assert _parent(run) == outer.get_span_context().span_id
