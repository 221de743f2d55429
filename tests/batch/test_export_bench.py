"""bench/export.py runs end to end in a small configuration (no timing is asserted)."""

from __future__ import annotations

import pytest

from agent.llama3 import tokenizer_is_exact
from bench.export import main

pytestmark = pytest.mark.slow


def test_the_export_bench_measures_every_case_against_reading(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--runs", "40"]) == 0
    out = capsys.readouterr().out
    rows = [
        line.split(" | ")
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    cases = [row[0].removeprefix("| ") for row in rows[1:]]
    expected = ["read", "native", "messages", "native --dedupe"]
    if tokenizer_is_exact():
        expected.insert(3, "native --tokenize")
    assert cases == expected
    exported = {row[0].removeprefix("| "): row[4] for row in rows[1:]}
    assert exported["native"] == exported["messages"] == "40"
    assert exported["native --dedupe"] == "20"
