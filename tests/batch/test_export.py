"""The export replays each run exactly: its text holds every prompt the server received, and
its completion spans are exactly what the model wrote (end tokens included, headers not)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from agent.batch import (
    IGNORE_INDEX,
    RunRecord,
    messages_example,
    native_example,
    replay,
    tokenize_spans,
)
from agent.errors import RenderError
from agent.llama3 import EOM, EOT, encode, tokenizer_is_exact
from agent.testing import Script, ScriptRequest, call_tool, sequence, tool_call_text

from .export_helpers import add, divide, recorded, web_search, with_messages

pytestmark = pytest.mark.anyio

HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _parallel(request: ScriptRequest) -> str:
    if request.tool_results:
        return f"Sums: {', '.join(request.tool_results)}<|eot_id|>"
    calls = [{"name": "add", "parameters": {"a": 1, "b": 2}}]
    calls.append({"name": "add", "parameters": {"a": 3, "b": 4}})
    return "<|python_tag|>" + "\n".join(json.dumps(c) for c in calls) + "<|eom_id|>"


def _builtin(request: ScriptRequest) -> str:
    if request.tool_results:
        return f"It came out in July 2024. {request.tool_results[-1]}<|eot_id|>"
    return '<|python_tag|>brave_search.call(query="llama 3.1 release")<|eom_id|>'


def _error_then_retry(request: ScriptRequest) -> str:
    # Divide by zero (the tool's error goes back to the model), then a good call, then answer.
    done = len(request.tool_results)
    if done == 0:
        return tool_call_text("divide", {"a": 1, "b": 0})
    if done == 1:
        return tool_call_text("divide", {"a": 1, "b": 4})
    return "1 / 4 is 0.25.<|eot_id|>"


def _malformed_then_fixed(request: ScriptRequest) -> str:
    # A botched call (the parser's reason goes back to the model), then a good one, then answer.
    done = len(request.tool_results)
    if done == 0:
        return '<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": }<|eom_id|>'
    if done == 1:
        return tool_call_text("add", {"a": 1, "b": 2})
    return "It is 3.<|eot_id|>"


SCENARIOS: dict[str, tuple[Callable[[], Script], dict[str, Any]]] = {
    "a tool call and a system prompt": (
        lambda: call_tool("add", {"a": 1, "b": 2}, then="It is 3."),
        {"tools": [add], "system": "You are terse. <|eot_id|> is not special here."},
    ),
    "a built-in call (eom)": (lambda: _builtin, {"tools": [web_search, add]}),
    "parallel calls": (lambda: _parallel, {"tools": [add]}),
    "an error sent back to the model": (lambda: _error_then_retry, {"tools": [divide]}),
    "a malformed call sent back": (lambda: _malformed_then_fixed, {"tools": [add]}),
    "no tools, a plain answer": (lambda: sequence("Paris."), {"system": "Be brief."}),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_text_holds_every_prompt_the_server_received(scenario: str) -> None:
    make, options = SCENARIOS[scenario]
    record, prompts, completions = await recorded(make(), "Do it.", **options)
    assert record.status == "answered", record.error
    played = replay(record)
    assert list(played.prompts) == prompts
    assert len(played.spans) == record.steps == len(completions)
    for before, (start, end), completion in zip(prompts, played.spans, completions, strict=True):
        # The prompt ends with the assistant header; the span starts right after it.
        assert played.text[:start] == before
        assert before.endswith(HEADER)
        written = played.text[start:end]
        assert written.removesuffix(EOM).removesuffix(EOT) == completion
        assert written.endswith((EOM, EOT))
    assert played.text.endswith(EOT)
    assert played.spans[-1][1] == len(played.text)


async def test_llama_3_2_python_list_calls_replay_too() -> None:
    script = sequence("[add(a=1, b=2)]", "3<|eot_id|>")
    record, prompts, _ = await recorded(script, "1 + 2?", model="helper", family="3.2", tools=[add])
    assert record.render["model"] == "llama3.2"
    assert list(replay(record).prompts) == prompts


async def test_native_line_and_its_spans() -> None:
    record, _, completions = await recorded(
        call_tool("add", {"a": 1, "b": 2}, then="It is 3."), "1 + 2?", tools=[add]
    )
    line = native_example(record)
    assert set(line) == {"id", "model", "text", "completion_spans"}
    assert line["id"] == "t-1"
    assert line["text"].startswith("<|begin_of_text|><|start_header_id|>system")
    spans = line["completion_spans"]
    assert [line["text"][s:e] for s, e in spans] == [completions[0] + EOM, "It is 3." + EOT]
    # The headers are the prompt's, never the model's.
    assert all(HEADER not in line["text"][s:e] for s, e in spans)
    assert json.loads(json.dumps(line)) == line


@pytest.mark.skipif(not tokenizer_is_exact(), reason="needs the tokenizer extra")
async def test_tokenize_labels_only_the_models_tokens() -> None:
    record, _, _ = await recorded(_builtin, "When did Llama 3.1 come out?", tools=[web_search])
    line = native_example(record, tokenize=True)
    ids, labels = line["input_ids"], line["labels"]
    text, spans = line["text"], line["completion_spans"]
    assert len(ids) == len(labels)
    assert ids[0] == 128000  # <|begin_of_text|> is one id
    # Here no piece starts with whitespace, so cutting at the span edges changes nothing.
    assert ids == encode(text)
    learned = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert learned == [t for s, e in spans for t in encode(text[s:e])]
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels, strict=True))
    # Each completion ends with its end token as a single learned id: eom (128008), eot (128009).
    learning = [label != IGNORE_INDEX for label in labels]
    ends = [i for i, on in enumerate(learning) if on and (i + 1 == len(ids) or not learning[i + 1])]
    assert [ids[i] for i in ends] == [128008, 128009]
    # The python tag is one learned id too.
    assert 128010 in learned


@pytest.mark.skipif(not tokenizer_is_exact(), reason="needs the tokenizer extra")
def test_tokenize_cuts_at_span_edges_as_the_server_did() -> None:
    # A completion that starts with a newline: the whole text would merge it with the header's
    # "\n\n"; the server tokenized the prompt alone and the model generated the newline after it.
    text = "<|begin_of_text|>" + HEADER + "\nHi<|eot_id|>"
    start = len("<|begin_of_text|>" + HEADER)
    ids, labels = tokenize_spans(text, [(start, len(text))])
    assert ids == encode(text[:start]) + encode(text[start:])
    assert ids != encode(text)
    assert labels[: len(encode(text[:start]))] == [IGNORE_INDEX] * len(encode(text[:start]))


async def test_messages_line_is_the_chat_form_trl_reads() -> None:
    record, _, _ = await recorded(_parallel, "Two sums.", tools=[add, web_search], system="Hi.")
    line = messages_example(record)
    assert set(line) == {"id", "messages", "tools", "chat_template_kwargs"}
    roles = [m["role"] for m in line["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]
    calls = line["messages"][2]["tool_calls"]
    assert [c["function"] for c in calls] == [
        {"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "add", "arguments": {"a": 3, "b": 4}},
    ]
    assert all(c["type"] == "function" and c["id"] for c in calls)
    results = line["messages"][3:5]
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls]
    assert [(r["name"], r["content"]) for r in results] == [("add", "3"), ("add", "7")]
    assert line["messages"][-1]["content"] == "Sums: 3, 7"
    [schema] = line["tools"]
    assert schema["type"] == "function"
    assert schema["function"]["name"] == "add"
    assert schema["function"]["parameters"]["required"] == ["a", "b"]
    # What Meta's chat template reads besides the messages and tools (TRL passes it on).
    assert line["chat_template_kwargs"] == {
        "builtin_tools": ["brave_search"],
        "date_string": "21 Sep 2024",
    }


async def test_builtin_results_are_named_as_the_call_named_them() -> None:
    record, _, _ = await recorded(_builtin, "When?", tools=[web_search])
    line = messages_example(record)
    assert [m["role"] for m in line["messages"]] == ["user", "assistant", "tool", "assistant"]
    call = line["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "brave_search", "arguments": {"query": "llama 3.1 release"}}
    # The runtime stores the serving tool's name (web_search); the chat form uses the call's.
    assert record.messages[2]["name"] == "web_search"
    assert line["messages"][2]["name"] == "brave_search"
    assert line["tools"] == []
    assert line["chat_template_kwargs"]["builtin_tools"] == ["brave_search"]


async def test_no_builtins_no_builtin_tools() -> None:
    # Meta's template turns on "Environment: ipython" for any builtin_tools, even [].
    record, _, _ = await recorded(sequence("Paris."), "Capital of France?")
    line = messages_example(record)
    assert line["tools"] == []
    assert line["chat_template_kwargs"] == {"date_string": "21 Sep 2024"}


async def test_a_record_that_does_not_replay_is_refused_with_the_reason() -> None:
    record, _, _ = await recorded(
        call_tool("add", {"a": 1, "b": 2}, then="3"), "1 + 2?", tools=[add]
    )
    messages = [dict(m) for m in record.messages]
    # A completion lost from the messages: the text would not be what the model saw.
    dropped = with_messages(record, messages[:2] + messages[4:])
    with pytest.raises(RenderError, match="2 requests but its messages hold 1"):
        replay(dropped)
    # A run whose last turn is not the model's.
    with pytest.raises(RenderError, match="last message is not a completion"):
        replay(with_messages(record, messages[:-1]))
    # Calls stored that the completion does not make: the chat form would teach other calls.
    edited = [dict(m) for m in messages]
    edited[1] = {**edited[1], "tool_calls": [{**edited[1]["tool_calls"][0], "arguments": {"a": 5}}]}
    with pytest.raises(RenderError, match="calls stored for completion 1 are not the ones"):
        messages_example(with_messages(record, edited))
    # Llama 3.1 prompts hold the date: a record without one cannot be replayed.
    undated = RunRecord.from_dict({**record.to_dict(), "today": None})
    with pytest.raises(RenderError, match="no date"):
        replay(undated)
    with pytest.raises(RenderError, match="does not replay"):
        messages_example(undated)
