"""bench/batch.py runs end to end in its smallest configuration (no timing is asserted)."""

from __future__ import annotations

import pytest

from bench.batch import main

pytestmark = pytest.mark.slow


def test_the_batch_bench_measures_both_clients_and_the_resume(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--tasks", "40", "--concurrency", "8", "--latency", "0.01", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 8 |")]
    assert [row.split(" | ")[1] for row in rows] == ["baseline", "batch"]
    assert "resume: 20 records done" in out
    assert "40-line tasks file" in out
