"""Ready-made scripts: pure functions of the prompt (except `sequence`)."""

import pytest

from agent.testing import (
    ScriptExhaustedError,
    ScriptRequest,
    answer,
    call_tool,
    call_tools,
    echo,
    sequence,
)

USER = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
IPYTHON = "<|start_header_id|>ipython<|end_header_id|>\n\n{}<|eot_id|>"
CALLED = '<|python_tag|>{"name": "f", "parameters": {}}<|eom_id|>'


def request(prompt: str, *, raw: bool = True) -> ScriptRequest:
    return ScriptRequest(endpoint="generate", model="llama3.1", prompt=prompt, raw=raw)


def test_turns_and_views() -> None:
    prompt = USER.format("hi") + ASSISTANT + CALLED + IPYTHON.format("42") + ASSISTANT
    req = request(prompt)
    assert [t.role for t in req.turns] == ["user", "assistant", "ipython", "assistant"]
    assert req.last_user == "hi"
    assert req.tool_results == ["42"]
    assert req.partial == ""
    assert request(USER.format("hi") + ASSISTANT + "Hel").partial == "Hel"


def test_answer_and_echo() -> None:
    assert answer("Hi.")(request(USER.format("x") + ASSISTANT)) == "Hi.<|eot_id|>"
    assert echo()(request(USER.format("ping") + ASSISTANT)) == "ping<|eot_id|>"
    after_tool = USER.format("q") + ASSISTANT + CALLED + IPYTHON.format("result") + ASSISTANT
    assert echo("got ")(request(after_tool)) == "got result<|eot_id|>"


def test_call_tool_then_answer_from_the_result() -> None:
    script = call_tool("get_weather", {"city": "Paris"}, then=lambda r: f"It is {r}.")
    first = script(request(USER.format("weather?") + ASSISTANT))
    assert first == (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'
    )
    second = script(
        request(USER.format("weather?") + ASSISTANT + first + IPYTHON.format("sunny") + ASSISTANT)
    )
    assert second == "It is sunny.<|eot_id|>"
    # Through /api/chat a real model writes bare JSON (the template has no ipython environment).
    assert script(request(USER.format("w") + ASSISTANT, raw=False)).startswith('{"name"')


def test_call_tools_in_steps() -> None:
    script = call_tools([("a", {}), ("b", {"x": 1})], then="done")
    prompt = USER.format("go") + ASSISTANT
    assert '"a"' in str(script(request(prompt)))
    prompt += CALLED + IPYTHON.format("1") + ASSISTANT
    assert '"b"' in str(script(request(prompt)))
    prompt += CALLED + IPYTHON.format("2") + ASSISTANT
    assert script(request(prompt)) == "done<|eot_id|>"


def test_sequence_in_order_then_exhausted() -> None:
    script = sequence("one", "two")
    prompt = USER.format("x") + ASSISTANT
    assert [script(request(prompt)), script(request(prompt))] == ["one", "two"]
    with pytest.raises(ScriptExhaustedError):
        script(request(prompt))
    again = sequence("only", repeat_last=True)
    assert [again(request(prompt)), again(request(prompt))] == ["only", "only"]


def test_sequence_serves_a_continuation_from_the_same_reply() -> None:
    script = sequence("Hello world", "second")
    prompt = USER.format("x") + ASSISTANT
    assert script(request(prompt)) == "Hello world"
    assert script(request(prompt + "Hello")) == "Hello world"
    assert script(request(prompt)) == "second"


def test_sequence_refuses_a_list_that_looks_like_several_replies() -> None:
    with pytest.raises(TypeError, match="separate arguments"):
        sequence(["first", "second"])
