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
from agent.config._spec import LimitsSettings, SandboxSettings, SearchSettings
from agent.loop import Limits

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


def test_limits_mirror_the_loop() -> None:
    spec = LimitsSettings()
    loop = Limits()
    assert set(LimitsSettings.model_fields) == {f.name for f in dataclasses.fields(Limits)}
    for name in LimitsSettings.model_fields:
        assert getattr(spec, name) == getattr(loop, name), name


def test_sandbox_settings_cover_every_sandbox_limit() -> None:
    from tools import SandboxLimits

    limits = {f.name for f in dataclasses.fields(SandboxLimits)}
    assert set(SandboxSettings.model_fields) - {"mode"} == limits


def test_search_settings_mirror_the_toolset() -> None:
    from tools import search_tools

    params = inspect.signature(search_tools).parameters
    assert set(SearchSettings.model_fields) == set(params)
    for name, field in SearchSettings.model_fields.items():
        if name == "names":  # unset in a config: chosen by model; "both" in Python
            assert (field.default, params[name].default) == (None, "both")
            continue
        assert field.default == params[name].default, name
