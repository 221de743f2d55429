"""The published JSON Schema: committed, in sync, and in agreement with the loader."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from agent.config import config_json_schema, load_config
from agent.config._spec import settings_spec

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_is_current() -> None:
    committed = json.loads((ROOT / "config.schema.json").read_text())
    assert committed == config_json_schema(), (
        "config.schema.json is stale: run `llama-agent schema > config.schema.json`"
    )


def test_default_config_points_editors_at_the_schema() -> None:
    first = (ROOT / "config.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./config.schema.json"


def test_default_config_is_valid_for_loader_and_schema() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.model == "llama3.1"
    assert [t if isinstance(t, str) else next(iter(t.model_dump())) for t in config.tools] == [
        "search",
        "code",
        "math",
    ]
    Draft202012Validator(config_json_schema()).validate(
        yaml.safe_load((ROOT / "config.yaml").read_text())
    )


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


ACCEPTED: list[Any] = [
    {"model": "llama3.1"},
    {"model": "x", "tools": ["search", "code", "math", "pkg.mod:fn", "a:B.method"]},
    {"model": "x", "tools": [{"search": None}, {"search": {"max_results": 3}}, {"math": {}}]},
    {"model": "x", "tools": [{"import": "m:f", "name": "f2", "timeout": 3, "retries": 0}]},
    {"model": "x", "sandbox": "none"},
    {"model": "x", "sandbox": {"mode": "none", "memory_bytes": "512MiB", "processes": 4}},
    {"model": "x", "ollama": {"keep_alive": -1, "options": {"stop": ["###"], "num_ctx": 8192}}},
]
REJECTED: list[Any] = [
    {},
    {"model": "x", "extra": 1},
    {"model": "x", "tools": ["serch"]},
    {"model": "x", "tools": ["not a path"]},
    {"model": "x", "tools": [{"search": {"regon": "x"}}]},
    {"model": "x", "tools": [{"import": "m:f", "timout": 3}]},
    {"model": "x", "sandbox": "docker"},
    {"model": "x", "limits": {"max_steps": 0}},
    {"model": "x", "ollama": {"options": {"top_p": 2}}},
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_schema_and_loader_accept_the_same(data: Any) -> None:
    from agent.config._spec import AgentConfig

    Draft202012Validator(config_json_schema()).validate(data)
    AgentConfig.model_validate(data)


@pytest.mark.parametrize("data", REJECTED)
def test_schema_and_loader_reject_the_same(data: Any) -> None:
    from pydantic import ValidationError

    from agent.config._spec import AgentConfig

    assert not Draft202012Validator(config_json_schema()).is_valid(data)
    with pytest.raises(ValidationError):
        AgentConfig.model_validate(data)


def test_search_settings_are_the_toolsets_own() -> None:
    from llama_agent_tools import SearchOptions, SearchSettings, search_tools

    spec = settings_spec(SearchSettings)
    assert set(spec.model_fields) == {f.name for f in dataclasses.fields(SearchSettings)}
    # The Python function's keyword defaults are the dataclass's.
    params = inspect.signature(search_tools).parameters
    for field in dataclasses.fields(SearchOptions):
        assert params[field.name].default == field.default, field.name
    assert spec.model_fields["names"].default is None  # chosen by model; "both" in Python
    assert params["names"].default == "both"
