"""The benchmark runner works end to end in its smallest configuration, and its helpers are right.

No timing is asserted: these tests check that every section runs against the emulator and
writes RESULTS-shaped output, and that what it reports is consistent with itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import _load, _streaming
from bench._common import percentile
from bench.run import DEFAULT_OUTPUT, ON_REQUEST, SECTIONS, main, output_directory

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--runs", "3", "--output", str(directory)]) == 0
    return directory


def _results(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "results.json").read_text())
    return data


def test_every_section_writes_its_tables(output: Path) -> None:
    data = _results(output)
    assert list(data["sections"]) == [key for key in SECTIONS if key not in ON_REQUEST]
    for key, section in data["sections"].items():
        assert section["tables"], key
        for table in section["tables"]:
            assert table["rows"], (key, table["title"])
            assert all(len(row) == len(table["headers"]) for row in table["rows"])


def test_the_machine_is_described(output: Path) -> None:
    machine = _results(output)["machine"]
    assert machine["cores"] >= 1
    assert machine["memory"]
    assert machine["cpu"]
    assert machine["python"].split()[-1].startswith("3.")
    assert machine["packages"]["ollama"]
    assert machine["date"][:2] == "20"


def test_results_md_has_every_section_and_the_goals(output: Path) -> None:
    text = (output / "RESULTS.md").read_text()
    assert text.startswith("# Benchmark results")
    assert "Quick run" in text
    assert "## Goals" in text
    for section in _results(output)["sections"].values():
        assert f"## {section['title']}" in text
    assert "| --- |" in text


def test_the_numbers_hang_together(output: Path) -> None:
    sections = _results(output)["sections"]
    per_step = sections["overhead"]["data"]["per_step"]
    assert set(per_step) == {"agent", "agent-sync", "hand", "bare"}
    assert all(v["wall"] > 0 for v in per_step.values())
    cases = sections["concurrency"]["data"]["cases"]
    assert {c["client"] for c in cases} == {"agent", "agent-estimate", "bare"}
    assert all(c["runs"] == 3 and c["rss_peak"] >= c["rss_before"] > 0 for c in cases)
    # Native prompts extend the previous prompt and completion exactly (so "new" is known), and
    # what is prefilled is what the cache did not hold.
    raw = sections["cache"]["data"]["ten_step_raw"]
    assert len(raw) == 10
    assert all(step["new"] is not None for step in raw[1:])
    assert all(s["prefilled"] + s["reused"] == s["prompt_tokens"] for s in raw)
    # Ollama's template drops the tools after the first request of a task.
    chat = sections["cache"]["data"]["ten_step_chat"]
    assert chat[1]["prompt_tokens"] < chat[0]["prompt_tokens"]
    assert all(s["samples"] > 0 for s in sections["streaming"]["data"].values())
    assert len(sections["tools"]["data"]["validation"]) == 4


def test_only_reruns_one_section_and_keeps_the_others(output: Path) -> None:
    before = _results(output)["sections"]
    assert main(["--quick", "--only", "3", "--output", str(output)]) == 0
    after = _results(output)["sections"]
    assert list(after) == [key for key in SECTIONS if key not in ON_REQUEST]
    assert after["tools"] == before["tools"]
    assert after["cache"]["data"] == before["cache"]["data"]  # deterministic token counts


def test_an_unknown_section_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown section"):
        main(["--only", "speed"])


# --- helpers ------------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([4.0, 1.0], 0) == 1.0


def test_wire_lines_split_across_reads_take_the_time_of_the_read_that_ends_them() -> None:
    wire = [
        (1.0, b'{"response":"Hel'),
        (2.0, b'lo"}\n{"response":" world"}\n{"resp'),
        (3.0, b'onse":"","done":true}\n'),
    ]
    assert _streaming._wire_chunks(wire) == [(2.0, "Hello"), (2.0, " world")]


def test_each_delta_is_timed_from_the_chunk_that_completed_it() -> None:
    chunks = [(1.0, "  Hel"), (2.0, "lo"), (3.0, " there"), (4.0, "!")]
    # Leading spaces are never shown; "Hel" waits for "lo"; "!" comes with its own chunk.
    deltas = [(2.5, "Hello"), (3.25, " there"), (4.5, "!")]
    assert _streaming._latencies(chunks, deltas) == [0.5, 0.25, 0.5]


def test_a_quick_run_never_overwrites_the_committed_results(tmp_path: Path) -> None:
    assert output_directory(None, quick=False) == DEFAULT_OUTPUT
    quick = output_directory(None, quick=True)
    assert quick == DEFAULT_OUTPUT / "quick"
    assert output_directory(tmp_path, quick=True) == tmp_path
    ignored = (DEFAULT_OUTPUT.parent / ".gitignore").read_text().splitlines()
    assert "bench/quick/" in ignored


def test_the_load_and_soak_parts_count_every_run() -> None:
    load = _load.run_part("load", 12, latency=0.01)
    assert load["right"] == 12, load["failed"]
    assert set(load["rss"]) == {"start", "middle", "end"}
    assert load["rss_peak"] >= max(load["rss"].values())
    soak = _load.run_part("soak", 12, wave=4, latency=0.01)
    assert soak["right"] == 12, soak["failed"]
    assert soak["waves"] == 3
    assert [done for done, _ in soak["rss_after"]] == [4, 8, 12]
    assert soak["rss"]["middle"] == soak["rss_after"][1][1]
