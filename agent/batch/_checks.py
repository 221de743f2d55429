"""Checking a run's answer: `expected` under a normalisation rule, or a judge function.

The rule (`matches(answer, expected)`), meant for short factual answers written as prose:

1. Both sides are normalised: Unicode NFKC, case folded, numbers written one way (`4.0`, `4.00`
   and `+4` are `4`; `1,000` is `1000`; `-0` is `0`), punctuation dropped except inside numbers,
   whitespace collapsed.
2. A number expected (`4`, `4.5`, or a string that is one number, `"4.0"`) passes when the LAST
   number in the answer equals it: "1 + 3 = 4." passes for 4, "4, not 5" does not (the
   convention of GSM8K-style graders: the conclusion comes last).
3. Any other text passes when its normalised words appear in the answer's as a whole run of
   words: "Paris" passes "The capital is Paris.", not "Parisian".
4. A list expected passes when any of its items does.

For anything else (a JSON answer, a tolerance, a model as the grader) give a judge:
`--judge module:function`, a function (sync or async) of the task line (the input's JSON object)
and the `RunResult`, returning a bool or `(bool, reason)`. A sync judge runs on the event loop:
make it async if it waits for anything.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent.errors import DeveloperError
from agent.loop import RunResult

from ._record import Verdict

_JUDGE_RAISED = "the judge raised"
_JUDGE_RETURNED = "the judge returned"

Judge = Callable[[dict[str, Any], RunResult], Any]
"""`judge(task_line, result)` → `bool | (bool, reason)`, or an awaitable of one."""

# A number as written in prose: sign, digits with optional thousands commas, decimals, exponent.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+|\w+")


def _canonical_number(text: str) -> str | None:
    """`text` as one canonical number (`"4.0"` → `"4"`), or None if it is not a number.

    Decimal, not float: `12345678901234567891` and `12345678901234567890` stay different."""
    if not text or not _NUMBER.fullmatch(text) or not any(c.isdigit() for c in text):
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value.is_zero():
        return "0"
    value = value.normalize()
    # Plain digits for ordinary sizes; `1E+999` stays short rather than a thousand zeros.
    return format(value, "f") if abs(value.adjusted()) <= 50 else str(value)


def normalise(text: str) -> list[str]:
    """The words of `text` under the rule: folded, numbers canonical, punctuation gone."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [_canonical_number(t) or t for t in _TOKEN.findall(folded)]


def _expected_number(expected: Any) -> str | None:
    if isinstance(expected, bool):
        return None
    if isinstance(expected, int | float):
        return _canonical_number(repr(expected)) if math.isfinite(expected) else None
    if isinstance(expected, str):
        return _canonical_number(unicodedata.normalize("NFKC", expected).strip())
    return None


def _contains(words: Sequence[str], run: Sequence[str]) -> bool:
    width = len(run)
    return width > 0 and any(
        list(words[i : i + width]) == list(run) for i in range(len(words) - width + 1)
    )


def matches(answer: str, expected: Any) -> tuple[bool, str | None]:
    """Whether `answer` passes for `expected` under the rule, and why not when it does not."""
    if isinstance(expected, list):
        for item in expected:
            passed, _ = matches(answer, item)
            if passed:
                return True, None
        return False, f"the answer matches none of the {len(expected)} expected answers"
    words = normalise(answer)
    number = _expected_number(expected)
    if number is not None:
        numbers = [w for w in words if _canonical_number(w) is not None]
        if numbers and numbers[-1] == number:
            return True, None
        last = numbers[-1] if numbers else "no number"
        return False, f"expected the number {number}; the answer's last number is {last}"
    wanted = normalise(str(expected))
    if _contains(words, wanted):
        return True, None
    return False, f"{' '.join(wanted)!r} is not in the answer (normalised)"


def expected_problem(expected: Any) -> str | None:
    """Why `expected` cannot be checked by the rule (None when it can)."""
    items = expected if isinstance(expected, list) else [expected]
    if isinstance(expected, list) and not expected:
        return "expected is an empty list: give at least one answer"
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            return (
                f"expected must be a string, a number or a list of them, got {item!r}: "
                "use a judge (--judge module:function) for anything else"
            )
        if not normalise(str(item)):
            return f"expected {item!r} has no words or numbers to compare"
    return None


def check_answer(result: RunResult, expected: Any) -> Verdict:
    """The verdict of the rule on `result` (not checked when the run did not answer)."""
    if not result.ok:
        return Verdict(
            passed=None,
            expected=expected,
            reason=f"not checked: the run ended with status {result.status}",
        )
    passed, reason = matches(result.answer, expected)
    return Verdict(passed=passed, expected=expected, reason=reason)


# --- judges -----------------------------------------------------------------------------------


def load_judge(path: str) -> Judge:
    """The function `module:function` names, importable from the current folder or the
    environment. Raises `DeveloperError` saying what is wrong."""
    module_name, colon, name = path.partition(":")
    if not colon or not module_name or not name.isidentifier():
        raise DeveloperError(
            f"--judge {path!r} is not module:function (as in --judge checks:grade, for a "
            "function grade in checks.py)"
        )
    here = str(Path.cwd())
    added = here not in sys.path
    if added:  # a judge beside the tasks, as `python -m` would find it; only for the import
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DeveloperError(
            f"--judge {path}: cannot import {module_name!r} (no module named {exc.name!r}); "
            "run from the folder that holds it or install it"
        ) from None
    except Exception as exc:
        raise DeveloperError(
            f"--judge {path}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if added:
            with suppress(ValueError):
                sys.path.remove(here)
    judge = getattr(module, name, None)
    if not callable(judge):
        raise DeveloperError(
            f"--judge {path}: {module_name} has no function {name!r}"
            + (f" ({name} is a {type(judge).__name__})" if judge is not None else "")
        )
    return judge  # type: ignore[no-any-return]


async def run_judge(judge: Judge, line: dict[str, Any], result: RunResult) -> tuple[Verdict, bool]:
    """The judge's verdict, and whether the judge broke. A judge that raises or returns
    something else is not the run's fault: the verdict is `passed=None` with what went wrong as
    its reason (and the batch's summary counts it)."""
    expected = line.get("expected")
    try:
        outcome = judge(line, result)
        if inspect.isawaitable(outcome):
            outcome = await _awaited(outcome)
    except Exception as exc:
        reason = f"{_JUDGE_RAISED} {type(exc).__name__}: {exc}"
        return Verdict(passed=None, expected=expected, reason=reason), True
    if isinstance(outcome, bool):
        return Verdict(passed=outcome, expected=expected), False
    if (
        isinstance(outcome, tuple)
        and len(outcome) == 2
        and isinstance(outcome[0], bool)
        and (outcome[1] is None or isinstance(outcome[1], str))
    ):
        return Verdict(passed=outcome[0], expected=expected, reason=outcome[1]), False
    reason = f"{_JUDGE_RETURNED} {outcome!r}, not a bool or (bool, reason)"
    return Verdict(passed=None, expected=expected, reason=reason), True


def judge_broke(verdict: Verdict) -> bool:
    """Whether `verdict` says the judge itself broke (as `run_judge` writes it)."""
    return verdict.passed is None and (verdict.reason or "").startswith(
        (_JUDGE_RAISED, _JUDGE_RETURNED)
    )


async def _awaited(outcome: Awaitable[Any]) -> Any:
    return await outcome
