"""Parser time is linear in the text, on the inputs that once made it quadratic (issue 14).

Times are compared, not bounded: parsing 4 times the text must take less than 8 times as long
(linear gives 4, quadratic 16), best of a few rounds, so a loaded machine does not fail it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from agent.llama3 import StreamParser, parse_completion

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
    assert large < 8 * max(small, 0.005), f"{case}: {small:.3f}s, then {large:.3f}s for 4x"


def test_special_token_lookalikes_are_fast() -> None:
    """4 MB of `<|` (a megabyte took 11.5 s when every `<|` copied the rest of the text)."""
    text = "<|" * 2_000_000
    assert _best(_whole, text, rounds=1) < 4.0
    result = parse_completion(text + "<|eot_id|>")
    assert result.content == text
    assert result.tool_calls == ()
