"""What streaming holds back at the end of the text (the unfinished start of a trigger) is found
by one regex search (`Triggers.held`): it must be what a look at every position finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3._calls import CALL_NAMES
from agent.llama3._candidates import is_word, triggers

TRIGGERS = triggers(frozenset(CALL_NAMES | {"add", "add-note", "get_weather", "a", "a_b"}))
LITERALS = ["<function=", "```", "brave_search.call(", "add-note.call(", "a.call(", "python.call("]


def reference(buf: str, start: int) -> int:
    """The first position from `start` where the rest is a prefix of a trigger (a name's only
    where no word comes before it), else the end."""
    for k in range(start, len(buf)):
        tail = buf[k:]
        if tail in TRIGGERS.prefixes and (tail[0] in "<`" or k == 0 or not is_word(buf[k - 1])):
            return k
    return len(buf)


def held(buf: str, start: int) -> int:
    m = TRIGGERS.held.search(buf, start)
    return len(buf) if m is None else m.start()


texts = st.lists(st.sampled_from([*"ab_.-<`=(x1é \n", "unctio", *LITERALS]), max_size=8).map(
    "".join
)


@settings(max_examples=2000, deadline=None)
@given(text=texts, literal=st.sampled_from(LITERALS), cut=st.integers(0, 30), data=st.data())
def test_the_regex_finds_what_a_look_at_every_position_finds(
    text: str, literal: str, cut: int, data: st.DataObject
) -> None:
    buf = text + literal[: min(cut, len(literal))]
    start = data.draw(st.integers(0, len(buf)))
    assert held(buf, start) == reference(buf, start)


def test_examples() -> None:
    assert held("Use brave_search.ca", 0) == len("Use ")
    assert held("my_brave_search.ca", 0) == len("my_brave_search.ca")  # inside a word: no
    assert held("x <functi", 0) == 2
    assert held("x ``", 0) == 2
    assert held("x ```", 0) == 3  # a whole fence is no prefix (it is found): its last two are
    assert held("brave", 0) == 0
    assert held("add-no", 0) == 0
    assert held("a-note.ca", 0) == len("a-note.ca")  # no tool is called `note`
