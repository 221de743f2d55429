"""The expected-answer rule and judges (sync, async, broken)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agent.batch import Verdict, check_answer, load_judge, matches, normalise, run_judge
from agent.errors import DeveloperError
from agent.loop import RunResult

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("4", 4),
        ("4.0", 4),
        ("The answer is 4.", "4.00"),
        ("1 + 3 = 4", 4),
        ("It costs 1,000 dollars.", 1000),
        ("x = -0.50", -0.5),
        ("Paris.", "paris"),
        ("The capital of France is  PARIS!", "Paris"),
        ("It is New York City, I think.", "new york"),
        ("Ｐａｒｉｓ", "Paris"),  # full-width letters fold under NFKC
        ("Das ist STRASSE", "straße"),  # casefold, not lower
        ("Blue.", ["red", "blue"]),
        ("About 4 or 5", [4, 5]),
        ("1e3", 1000),
        ("12345678901234567891", 12345678901234567891),
    ],
)
def test_answers_that_pass(answer: str, expected: Any) -> None:
    assert matches(answer, expected) == (True, None)


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        ("5, no wait: 4", 5, "expected the number 5; the answer's last number is 4"),
        ("5 is wrong, 4 is right... or 5", 4, "the answer's last number is 5"),
        ("no idea", 4, "the answer's last number is no number"),
        ("Parisian food", "Paris", "'paris' is not in the answer"),
        ("york new", "new york", "'new york' is not in the answer"),
        ("green", ["red", "blue"], "matches none of the 2 expected answers"),
        # A float would make these two equal.
        ("12345678901234567890", 12345678901234567891, "last number is 12345678901234567890"),
    ],
)
def test_answers_that_fail_say_why(answer: str, expected: Any, reason: str) -> None:
    passed, why = matches(answer, expected)
    assert not passed
    assert why is not None
    assert reason in why


def test_the_last_number_decides_even_when_an_earlier_one_matches() -> None:
    # "4, not 5" must not pass for 4 by accident of containing it: only the conclusion counts.
    assert matches("4, not 5", 4)[0] is False
    assert matches("not 5 but 4", 4)[0] is True


def test_normalise_writes_numbers_one_way_and_drops_punctuation() -> None:
    assert normalise("+4.0, 1,234.50 -0; ¡Hola!") == ["4", "1234.5", "0", "hola"]


def _result(answer: str, status: str = "answered") -> RunResult:
    return RunResult(answer=answer, messages=(), status=status)  # type: ignore[arg-type]


def test_a_run_that_did_not_answer_is_not_checked() -> None:
    verdict = check_answer(_result("", "step_limit"), 4)
    assert verdict == Verdict(
        passed=None, expected=4, reason="not checked: the run ended with status step_limit"
    )
    assert check_answer(_result("4"), 4) == Verdict(passed=True, expected=4)


# --- judges -----------------------------------------------------------------------------------

JUDGES = """
def exact(line, result):
    return result.answer == line["expected"]

async def with_reason(line, result):
    return (result.answer.startswith("4"), "looked at the start")

def raises(line, result):
    raise ValueError("judge bug")

def wrong_type(line, result):
    return "yes"

not_a_function = 3
"""


@pytest.fixture
def judges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"judges_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(JUDGES)
    monkeypatch.chdir(tmp_path)  # a judge beside the tasks, found from the current folder
    yield name
    sys.modules.pop(name, None)


async def test_a_sync_judge(judges: str) -> None:
    judge = load_judge(f"{judges}:exact")
    line = {"id": 1, "task": "t", "expected": "4"}
    assert await run_judge(judge, line, _result("4")) == (Verdict(passed=True, expected="4"), False)
    assert await run_judge(judge, line, _result("5")) == (
        Verdict(passed=False, expected="4"),
        False,
    )


async def test_an_async_judge_with_a_reason(judges: str) -> None:
    judge = load_judge(f"{judges}:with_reason")
    verdict, broke = await run_judge(judge, {"id": 1, "task": "t"}, _result("4!"))
    assert verdict == Verdict(passed=True, expected=None, reason="looked at the start")
    assert not broke


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("raises", "the judge raised ValueError: judge bug"),
        ("wrong_type", "the judge returned 'yes', not a bool or (bool, reason)"),
    ],
)
async def test_a_broken_judge_leaves_the_run_unchecked_and_says_so(
    judges: str, name: str, reason: str
) -> None:
    verdict, broke = await run_judge(load_judge(f"{judges}:{name}"), {"id": 1}, _result("4"))
    assert broke
    assert verdict.passed is None
    assert verdict.reason == reason


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("no_colon", "is not module:function"),
        ("x:1bad", "is not module:function"),
        ("surely_not_a_module_xyz:f", "cannot import 'surely_not_a_module_xyz'"),
        ("{judges}:missing", "has no function 'missing'"),
        ("{judges}:not_a_function", "(not_a_function is a int)"),
    ],
)
def test_a_judge_that_cannot_be_loaded_is_one_message(judges: str, path: str, says: str) -> None:
    with pytest.raises(DeveloperError, match=None) as caught:
        load_judge(path.format(judges=judges))
    assert says in str(caught.value)
    assert str(Path.cwd()) not in sys.path  # the current folder was on the path only to import
