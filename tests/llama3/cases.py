"""The reference cases in `data/` (produced with Meta's code: see `data/README.md`), loaded for
the tests.

They are required: a missing file fails the tests loudly instead of skipping them.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

# Meta's model names in the cases, as Ollama names them (data/README.md).
OLLAMA_NAMES = {
    "Llama3.1-8B-Instruct": "llama3.1",
    "Llama3.2-3B-Instruct": "llama3.2:3b",
    "Llama3.3-70B-Instruct": "llama3.3",
}


@cache
def load(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the llama3 tests need their reference cases")
    cases: list[dict[str, Any]] = json.loads(path.read_text("utf-8"))
    return cases


def render_cases() -> list[dict[str, Any]]:
    return load("render_cases.json")


def parse_cases() -> list[dict[str, Any]]:
    return load("parse_cases.json")


def render_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    """`render_prompt` keyword arguments for a render case."""
    return {
        "model": OLLAMA_NAMES[case["model"]],
        "today": dt.date.fromisoformat(case["today"]),
        "tool_format": case["tool_prompt_format"],
        "tool_choice": case["tool_choice"],
        "system_message_behavior": case["system_message_behavior"],
        "add_system_prompt": case["assembly"] != "raw",
    }


def expected_parse(case: dict[str, Any]) -> dict[str, Any]:
    """The right answer: `should_be` where Meta is wrong (`meta_ok: false`), else `expected`."""
    if case.get("meta_ok") is False and "should_be" in case:
        answer: dict[str, Any] = case["should_be"]
        return answer
    answer = case["expected"]
    return answer
