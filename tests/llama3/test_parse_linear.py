"""Parser time is linear in the text, on the inputs that once made it quadratic (issue 14),
and fast: megabytes of hostile text in a fraction of a second.

Times are mostly compared, not bounded: parsing 4 times the text must take less than 8 times as
long (linear gives 4, quadratic 16), best of a few rounds, so a loaded machine does not fail it.
The absolute bounds are generous (2 MB in 2 s: about 0.05 s on an idle machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from agent.llama3 import StreamParser, parse_completion
from agent.llama3._calls import MAX_DEPTH
from agent.llama3._scan import MAX_CANDIDATES, TOO_MANY_CALLS

_CALL = json.dumps({"name": "f", "parameters": {"a": 1}}) + "\n"

# (unit repeated, characters at the small size): the large size is 4 times that.
HOSTILE = {
    "special-token lookalikes": ("<|", 250_000),
    "unclosed nesting": ("[{(", 6_000),
    "unclosed nesting, one closer at the end": ("[{(", 6_000),
    "repeated JSON calls": (_CALL, 12_000),
    "unclosed objects": ('{"name": "f", "parameters": {', 60_000),
    "unclosed function tags": ("<function=f>{", 60_000),
}


def _text(case: str, size: int) -> str:
    unit, _ = HOSTILE[case]
    text = unit * (size // len(unit))
    return text + "]" if "closer" in case else text


def _whole(text: str) -> None:
    parse_completion(text)


def _streamed(text: str) -> None:
    parser = StreamParser()
    for i in range(0, len(text), 4096):
        parser.feed(text[i : i + 4096])
    parser.finish()


def _best(parse: Callable[[str], None], text: str, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        parse(text)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("parse", [_whole, _streamed], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_parse_time_grows_linearly(case: str, parse: Callable[[str], None]) -> None:
    size = HOSTILE[case][1]
    small = _best(parse, _text(case, size))
    large = _best(parse, _text(case, 4 * size))
    # A floor keeps timer noise on tiny times from deciding.
    assert large < 8 * max(small, 0.02), f"{case}: {small:.3f}s, then {large:.3f}s for 4x"


def test_special_token_lookalikes_are_fast() -> None:
    """4 MB of `<|` (a megabyte took 11.5 s when every `<|` copied the rest of the text)."""
    text = "<|" * 2_000_000
    assert _best(_whole, text, rounds=1) < 4.0
    result = parse_completion(text + "<|eot_id|>")
    assert result.content == text
    assert result.tool_calls == ()


@pytest.mark.parametrize("parse", [_whole, _streamed], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_two_megabytes_of_hostile_text_parse_fast(case: str, parse: Callable[[str], None]) -> None:
    assert _best(parse, _text(case, 2_000_000), rounds=2) < 2.0


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_text_streamed_equals_whole(case: str) -> None:
    """Past the limits (depth, number of candidates, batched appends) too."""
    text = _text(case, 300_000)
    parser = StreamParser()
    shown = "".join(parser.feed(text[i : i + 4096]) for i in range(0, len(text), 4096))
    whole = parse_completion(text)
    assert parser.finish() == whole
    assert whole.content.startswith(shown)


def test_unclosed_nesting_is_prose() -> None:
    text = "[{(" * 1_000_000
    result = parse_completion(text)
    assert (result.content, result.tool_calls, result.malformed) == (text, (), ())


def test_a_flood_of_calls_reads_the_first_ones_and_tells_the_model() -> None:
    result = parse_completion(_CALL * 100_000)
    assert len(result.tool_calls) == MAX_CANDIDATES
    assert [m.reason for m in result.malformed] == [TOO_MANY_CALLS]
    tagged = parse_completion("<|python_tag|>" + _CALL * 5_000)
    assert len(tagged.tool_calls) == MAX_CANDIDATES
    assert TOO_MANY_CALLS in [m.reason for m in tagged.malformed]


def test_prose_with_many_brackets_is_not_flagged() -> None:
    """A long answer full of bracketed words spends the candidates silently."""
    text = "See [note] here. " * (2 * MAX_CANDIDATES)
    result = parse_completion(text)
    assert (result.content, result.malformed) == (text.strip(), ())


def test_nesting_past_the_depth_limit_never_closes() -> None:
    # Python-style quotes: valid JSON is decoded whole (in C), whatever its depth.
    deep = "{'name': 'f', 'parameters': {'a': " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}}"
    result = parse_completion(deep)
    assert result.tool_calls == ()
    assert len(result.malformed) == 1
    shallow = deep.replace("[" * MAX_DEPTH, "[" * 100).replace("]" * MAX_DEPTH, "]" * 100)
    assert len(parse_completion(shallow).tool_calls) == 1


def test_dotted_call_triggers_need_a_whole_name() -> None:
    assert parse_completion('brave_search.call(query="x")').tool_calls
    assert not parse_completion('my_brave_search.call(query="x")').tool_calls
    text = "x.call(" * 500_000 + 'Then: brave_search.call(query="y")'
    assert _best(_whole, text, rounds=1) < 4.0
    (call,) = parse_completion(text).tool_calls
    assert call.arguments == {"query": "y"}
