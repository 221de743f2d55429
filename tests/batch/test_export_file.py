"""`export_runs`, the dataset card and `llama-agent export` over a runs.jsonl: filters, dedupe,
skip reasons with their counts, and a file written whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from typer.testing import CliRunner

from agent.batch import (
    IGNORE_INDEX,
    RunRecord,
    Verdict,
    dataset_card,
    export_runs,
    normalize_task,
    write_card,
)
from agent.cli._app import app
from agent.llama3 import count_tokens, tokenizer_is_exact
from agent.testing import call_tool, sequence

from .export_helpers import add, recorded, with_messages

UNREADABLE_LINE = b'{"id": 9, "task": "torn'
WRONG_KINDS = (
    b'{"id": 8, "task": "t", "status": "answered", "ok": true, "steps": "two", "record_version": 1}'
)


async def _make_records() -> list[RunRecord]:
    two_steps = call_tool("add", {"a": 1, "b": 2}, then="3")
    first, _, _ = await recorded(two_steps, "What is 1 + 2?", id=1, tools=[add])
    # The same task written differently, answered in one step: the better run of the two.
    second, _, _ = await recorded(sequence("3"), "  what is 1 +\t2? ", id=2, tools=[add])
    failed, _, _ = await recorded(sequence("Lyon."), "Capital of France?", id=3, passed=False)
    unchecked, _, _ = await recorded(sequence("Blue."), "Sky colour?", id=6, passed=None)
    stopped = replace(first, id=4, task="Other task", status="step_limit", ok=False)
    messages = [dict(m) for m in first.messages]
    tampered = with_messages(replace(first, id=5, task="Tampered"), messages[:1] + messages[3:])
    return [first, second, failed, stopped, tampered, unchecked]


@pytest.fixture(scope="module")
def records() -> list[RunRecord]:
    return anyio.run(_make_records)


@pytest.fixture
def runs(tmp_path: Path, records: list[RunRecord]) -> Path:
    path = tmp_path / "runs.jsonl"
    lines = [r.to_json() for r in records[:3]] + [b"\n", UNREADABLE_LINE + b"\n"]
    path.write_bytes(b"".join(lines + [r.to_json() for r in records[3:]]))
    return path


def _ids(path: Path) -> list[Any]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_default_exports_answered_runs_that_replay_and_counts_the_rest(
    runs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "train.jsonl"
    report = export_runs(runs, out)
    assert _ids(out) == [1, 2, 3, 6]
    assert (report.input_runs, report.exported) == (7, 4)
    assert report.skipped == {
        "status step_limit": 1,
        "does not replay exactly": 1,
        "unreadable line": 1,
    }
    assert report.models == {"llama3.1": 4}
    assert report.steps == 5
    assert report.tool_calls == 1
    assert 0 < report.completion_tokens < report.tokens
    # Each warning names the file, the line and the run.
    assert [w.split(": ")[0] for w in report.warnings] == [f"{runs}:5", f"{runs}:7"]
    assert "run 5" in report.warnings[1]
    assert "2 requests but its messages hold 1" in report.warnings[1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.jsonl"]  # no temporary left


def test_only_passed_max_steps_and_dedupe(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    report = export_runs(runs, out, only_passed=True)
    assert _ids(out) == [1, 2]
    assert report.skipped["check not passed"] == 1
    assert report.skipped["no check"] == 1

    report = export_runs(runs, out, max_steps=1)
    assert _ids(out) == [2, 3, 6]
    assert report.skipped["over max steps"] == 2  # runs 1 and 5 (filters come before replay)

    report = export_runs(runs, out, dedupe=True)
    assert _ids(out) == [2, 3, 6]  # run 2 answered the same task in fewer steps
    assert report.skipped["duplicate task"] == 1
    # Only eligible runs compete: with run 1 over max steps, run 2 is no duplicate.
    report = export_runs(runs, out, dedupe=True, max_steps=1)
    assert _ids(out) == [2, 3, 6]
    assert "duplicate task" not in report.skipped


def test_dedupe_prefers_a_passed_check(tmp_path: Path, records: list[RunRecord]) -> None:
    first, second = records[0], records[1]
    failed_second = replace(second, check=Verdict(passed=False, expected="3"))
    runs = tmp_path / "runs.jsonl"
    runs.write_bytes(failed_second.to_json() + first.to_json())
    out = tmp_path / "train.jsonl"
    export_runs(runs, out, dedupe=True)
    assert _ids(out) == [1]


def test_lines_that_are_not_records_are_counted_not_fatal(
    tmp_path: Path, records: list[RunRecord]
) -> None:
    runs = tmp_path / "runs.jsonl"
    newer = records[0].to_json().replace(b'"record_version":1', b'"record_version":2')
    runs.write_bytes(WRONG_KINDS + b"\n" + newer + b"[1, 2]\n" + records[1].to_json())
    out = tmp_path / "train.jsonl"
    report = export_runs(runs, out)
    assert _ids(out) == [2]
    assert report.skipped == {"unreadable line": 3}
    assert "not a run record" in report.warnings[0]
    assert "record_version 2" in report.warnings[1]
    assert "JSON object" in report.warnings[2]


def test_normalized_task() -> None:
    assert normalize_task("  What is\t1 +  2? ") == normalize_task("what is 1 + 2?")
    assert normalize_task("Ｗhat") == "what"  # NFKC: full-width letters


def test_messages_format_file(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "chat.jsonl"
    report = export_runs(runs, out, format="messages")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [1, 2, 3, 6]
    assert report.skipped["does not replay exactly"] == 1
    assert lines[0]["messages"][1]["tool_calls"][0]["function"]["name"] == "add"


def test_the_card_has_a_yaml_header_and_the_counts(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "train.jsonl"
    report = export_runs(runs, out, only_passed=True)
    card = write_card(report)
    assert card == tmp_path / "data" / "train.card.md"
    text = card.read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "train.jsonl"}]}
    ]
    assert header["size_categories"] == ["n<1K"]
    assert "llama3.1" in header["pretty_name"]
    assert "| input runs | 7 |" in text
    assert "| exported | 2 |" in text
    assert "| check not passed | 1 |" in text
    assert "| does not replay exactly | 1 |" in text
    assert "| llama3.1 | 2 |" in text
    assert "only runs whose check passed: yes" in text
    # A card elsewhere points at the data relative to itself.
    elsewhere = dataset_card(report, card_path=tmp_path / "cards" / "README.md")
    assert "path: ../data/train.jsonl" in elsewhere


def test_cli_export(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    card = tmp_path / "README.md"
    args = ["export", str(runs), "-o", str(out), "--only-passed", "--card", str(card), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["exported"] == 2
    assert summary["skipped"]["unreadable line"] == 1
    assert summary["card"] == str(card)
    assert card.is_file()
    assert _ids(out) == [1, 2]


def test_cli_export_human_summary(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(app, ["export", str(runs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "exported 4 of 7 runs" in result.stderr
    assert "warning:" in result.stderr
    assert (tmp_path / "train.card.md").is_file()


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--format", "xml"], 2, "use native or messages"),
        (["--format", "messages", "--tokenize"], 2, "--format native only"),
    ],
)
def test_cli_export_refuses(
    runs: Path, tmp_path: Path, extra: list[str], code: int, message: str
) -> None:
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(app, ["export", str(runs), "-o", str(out), *extra])
    assert result.exit_code == code
    assert message in result.stderr
    assert not out.exists()


def test_cli_export_missing_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "t.jsonl"), "--json"]
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["type"] == "usage"


@pytest.mark.skipif(not tokenizer_is_exact(), reason="needs the tokenizer extra")
def test_token_counts_agree_with_the_tokenized_export(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    counted = export_runs(runs, out)
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert counted.tokens == sum(count_tokens(text) for text in texts)
    tokenized = export_runs(runs, out, tokenize=True)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert tokenized.tokens == sum(len(line["input_ids"]) for line in lines) == counted.tokens
    learned = sum(1 for line in lines for label in line["labels"] if label != IGNORE_INDEX)
    assert tokenized.completion_tokens == learned == counted.completion_tokens


@pytest.mark.skipif(not tokenizer_is_exact(), reason="needs the tokenizer extra")
def test_cli_export_tokenized(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(app, ["export", str(runs), "-o", str(out), "--tokenize"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(line["input_ids"]) == len(line["labels"]) > 0 for line in lines)
    assert "| Llama 3 tokens |" in (tmp_path / "train.card.md").read_text()


def test_tokenize_without_the_tokenizer_says_what_to_install(runs: Path, tmp_path: Path) -> None:
    # A separate process: the tokenizer is loaded once per process, and this one has it.
    env = {**os.environ, "LLAMA_AGENT_TOKENIZER": str(tmp_path / "no-such-tokenizer.model")}
    out = tmp_path / "train.jsonl"
    args = [sys.executable, "-m", "agent", "export", str(runs), "-o", str(out), "--tokenize"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert "pip install 'llama-agent[tokenizer]'" in done.stderr
    assert not out.exists()
