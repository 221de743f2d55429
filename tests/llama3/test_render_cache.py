"""What the renderer remembers between steps (tool blocks by content, each message's text by
the message object) never changes what it renders."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
from typing import Any

import pytest

from agent.llama3 import Message, ToolCall, ToolSpec, _render, render_prompt
from agent.llama3._render import IdentityCache

DAY = dt.date(2024, 9, 21)


def spec(properties: dict[str, Any], name: str = "f") -> ToolSpec:
    return ToolSpec(
        name=name,
        description="Does f.",
        parameters={"type": "object", "properties": properties, "required": list(properties)},
    )


def forget_everything() -> None:
    _render._last_tools = None
    for cached in (
        _render._head,
        _render._json_tools,
        _render._function_tag_tools,
        _render._python_list_functions,
    ):
        cached.cache_clear()


def uncached(messages: list[Message], tools: list[ToolSpec], **options: Any) -> str:
    """The prompt rendered from fresh copies of everything, with the block caches cleared."""
    forget_everything()
    copies = [dataclasses.replace(m) for m in messages]
    specs = [dataclasses.replace(s, parameters=dict(s.parameters)) for s in tools]
    return render_prompt(copies, specs, today=DAY, **options)


MODELS = [
    {"model": "llama3.1"},
    {"model": "llama3.1", "tool_format": "function_tag"},
    {"model": "llama3.2"},
]
A = {"type": "string", "description": "A."}
B = {"type": "integer", "description": "B.", "default": 0}


@pytest.mark.parametrize("options", MODELS, ids=lambda o: "-".join(o.values()))
def test_tools_in_another_order_of_properties_are_another_block(options: dict[str, Any]) -> None:
    ab, ba = spec({"a": A, "b": B}), spec({"b": B, "a": A})
    messages = [Message(role="user", content="Hi")]
    first = render_prompt(messages, [ab], today=DAY, **options)
    second = render_prompt(messages, [ba], today=DAY, **options)
    if options.get("tool_format") != "function_tag":  # which sorts the keys
        assert first != second
    assert first == uncached(messages, [ab], **options)
    assert second == uncached(messages, [ba], **options)


def test_a_tuple_default_is_not_a_list_default() -> None:
    # Equal as JSON, different as Python: the 3.2 list prints defaults with str().
    as_tuple = spec({"xs": {"type": "array", "default": (1, 2)}})
    as_list = spec({"xs": {"type": "array", "default": [1, 2]}})
    messages = [Message(role="user", content="Hi")]
    with_tuple = render_prompt(messages, [as_tuple], model="llama3.2", today=DAY)
    with_list = render_prompt(messages, [as_list], model="llama3.2", today=DAY)
    assert "(1, 2)" in with_tuple
    assert "[1, 2]" in with_list


def test_equal_specs_built_anew_share_the_block() -> None:
    messages = [Message(role="user", content="Hi")]
    forget_everything()
    render_prompt(messages, [spec({"a": A})], today=DAY)
    render_prompt(
        messages,
        [
            {
                "name": "f",
                "description": "Does f.",
                "parameters": {"type": "object", "properties": {"a": A}, "required": ["a"]},
            }
        ],
        today=DAY,
    )
    info = _render._head.cache_info()  # the whole head, tool block included
    assert (info.hits, info.misses) == (1, 1)
    assert _render._json_tools.cache_info().misses == 1


def test_the_head_follows_what_it_is_made_of() -> None:
    # The head (system prompt, tool block) is kept by what it is made of: any change shows.
    system = Message(role="system", content="Be brief. {{ function_description }}", trusted=True)
    messages = [system, Message(role="user", content="Hi")]
    tools = [spec({"a": A})]
    seen = set()
    for options in (
        {},
        {"tool_choice": "required"},
        {"tool_choice": "f"},
        {"tool_choice": "none"},
        {"tool_format": "function_tag"},
        {"model": "llama3.2"},
        {"model": "llama3.2", "system_message_behavior": "replace"},
    ):
        once = render_prompt(messages, tools, today=DAY, **options)
        assert once == uncached(messages, tools, **options)
        seen.add(once)
    seen.add(render_prompt(messages, tools, today=dt.date(2024, 9, 22)))
    other = [Message(role="system", content="Be long.", trusted=True), messages[1]]
    seen.add(render_prompt(other, tools, today=DAY))
    seen.add(render_prompt(messages[1:], tools, today=DAY))
    seen.add(render_prompt(messages, [spec({"a": B})], today=DAY))
    assert len(seen) == 11


@pytest.mark.parametrize("options", MODELS, ids=lambda o: "-".join(o.values()))
def test_a_conversation_renders_the_same_every_time(options: dict[str, Any]) -> None:
    tools = [spec({"a": A, "b": B}), ToolSpec(name="web", builtin="brave_search")]
    messages = [
        Message(role="system", content="Be brief.", trusted=True),
        Message(role="user", content="Look up <|eot_id|> please"),
        Message(
            role="assistant",
            raw='{"name": "f", "parameters": {"a": "x", "b": 1}}',
            stop_reason="end_of_message",
        ),
        Message(role="tool", content="result <|python_tag|>"),
        Message(role="user", content="<|eot_id|> trusted", trusted=True),
    ]
    once = render_prompt(messages, tools, today=DAY, **options)
    assert render_prompt(messages, tools, today=DAY, **options) == once
    assert once == uncached(messages, tools, **options)
    assert "Look up <\u200c|eot_id|> please" in once
    assert "result <\u200c|python_tag|>" in once
    assert "\n\n<|eot_id|> trusted<|eot_id|>" in once


def test_an_assistant_turn_without_raw_follows_the_format_and_its_arguments() -> None:
    arguments = {"a": "Paris"}
    turn = Message(role="assistant", tool_calls=(ToolCall(name="f", arguments=arguments),))
    messages = [Message(role="user", content="Hi"), turn]
    tools = [spec({"a": A})]
    as_json = render_prompt(messages, tools, today=DAY)
    as_tag = render_prompt(messages, tools, today=DAY, tool_format="function_tag")
    assert '{"type": "function", "name": "f", "parameters": {"a": "Paris"}}' in as_json
    assert '<function=f>{"a": "Paris"}</function>' in as_tag
    arguments["a"] = "Rome"  # not cached: its text depends on a dict that may change
    assert '"parameters": {"a": "Rome"}' in render_prompt(messages, tools, today=DAY)


def test_the_same_tuple_of_specs_renders_as_given_and_edited_dicts_are_read_again() -> None:
    tools = (spec({"a": A}), spec({"b": B}, name="g"))
    messages = [Message(role="user", content="Hi")]
    first = render_prompt(messages, tools, today=DAY)
    assert render_prompt(messages, tools, today=DAY) == first == uncached(messages, list(tools))
    assert render_prompt(messages, tools[:1], today=DAY) == uncached(messages, list(tools[:1]))
    # Dicts may change between two renders: never taken from the last render's tools.
    raw = {"name": "h", "description": "Does h.", "parameters": {"type": "object"}}
    given = (raw,)
    assert '"name": "h"' in render_prompt(messages, given, today=DAY)
    raw["name"] = "k"
    assert '"name": "k"' in render_prompt(messages, given, today=DAY)


def test_message_texts_are_forgotten_with_their_messages() -> None:
    messages = [Message(role="user", content=f"question {i}") for i in range(5)]
    render_prompt(messages, [], today=DAY)
    assert all(_render._PARTS.get(m) is not None for m in messages)
    before = len(_render._PARTS)
    del messages
    gc.collect()
    assert len(_render._PARTS) <= before - 5


def test_identity_cache() -> None:
    @dataclasses.dataclass(frozen=True)
    class Box:
        items: dict[str, int]

    cache: IdentityCache[str] = IdentityCache()
    one, two = Box({"x": 1}), Box({"x": 1})
    cache.put(one, "one")
    assert cache.get(one) == "one"
    assert cache.get(two) is None  # equal is not the same
    cache.put(7, "int")  # no weak references to ints: not stored
    assert cache.get(7) is None
    assert len(cache) == 1
    del one
    gc.collect()
    assert len(cache) == 0
