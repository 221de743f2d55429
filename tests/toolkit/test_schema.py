"""Signature -> schema: the snapshot table, and the points where other runtimes go wrong.

The expected schemas live in `schemas.json`. After a deliberate change, regenerate it with
`python -m tests.toolkit.test_schema` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.toolkit.signatures import SIGNATURES, make

SNAPSHOTS = Path(__file__).with_name("schemas.json")


def _current() -> dict[str, dict[str, Any]]:
    return {
        name: {"description": t.description, "parameters": t.parameters}
        for name, t in ((n, make(n)) for n in SIGNATURES)
    }


def _expected() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(SNAPSHOTS.read_text())
    return data


def test_table_has_at_least_30_signatures_and_no_stale_snapshots() -> None:
    assert len(SIGNATURES) >= 30
    assert set(_expected()) == set(SIGNATURES)


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_schema_matches_snapshot(name: str) -> None:
    made = make(name)
    expected = _expected()[name]
    assert made.parameters == expected["parameters"]
    assert made.description == expected["description"]
    # Same key order too: the prompt must not change between runs (prefix stability).
    assert json.dumps(made.parameters) == json.dumps(expected["parameters"])


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(make(name).parameters)


def test_what_the_official_client_gets_wrong_is_right_here() -> None:
    schema = make("literal_str").parameters
    unit = schema["properties"]["unit"]
    assert unit["enum"] == ["C", "F"]  # Literal values kept
    assert unit["default"] == "C"
    assert schema["required"] == ["value"]  # a defaulted argument is not required
    assert make("list_str").parameters["properties"]["tags"]["items"] == {"type": "string"}
    assert make("union_param").parameters["properties"]["key"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    item = make("model_param").parameters["properties"]["item"]
    assert item["type"] == "object"
    assert set(item["properties"]) == {"name", "qty"}
    assert "$defs" not in make("model_param").parameters  # inlined, nothing left unused


def test_no_titles_and_type_first() -> None:
    text = json.dumps(make("nested_model").parameters)
    assert '"title"' not in text
    assert list(make("google_doc").parameters["properties"]["unit"])[:2] == ["type", "description"]


def test_context_parameter_is_never_shown() -> None:
    assert "ctx" not in json.dumps(make("with_context").parameters)
    assert "ctx" not in json.dumps(make("optional_context").parameters)


if __name__ == "__main__":
    SNAPSHOTS.write_text(json.dumps(_current(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(SIGNATURES)} schemas to {SNAPSHOTS}")
