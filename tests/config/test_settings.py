"""Each setting is defined once: the config's models are made from the runtime's dataclasses.

`limits:` is `agent.Limits`, `ollama.options` (with `ollama.keep_alive`) is
`agent.GenerateOptions`, a toolset's entry is its settings dataclass, `sandbox:` the code
toolset's section settings: a default, a bound or a description lives on the runtime type only.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from agent import GenerateOptions, Limits, load_agent
from agent.config import LimitsSettings, OllamaOptions, OllamaSettings
from agent.config._spec import (
    TOOL_OPTIONS,
    AgentConfig,
    ToolsetEntry,
    entry_settings,
    section_spec,
    settings_spec,
    spec_fields,
    spec_model,
    toolset_entry,
    toolsets,
)
from agent.errors import ConfigError
from agent.toolkit import MCPServerSettings

# The keys only a config has: what the model, prompt and tools are, and where the server is.
# A setting the runtime also has belongs on its dataclass, not here.
CONFIG_ONLY = {
    "AgentConfig": {
        "model",
        "name",
        "description",
        "system",
        "tools",
        "tool_format",
        "tool_choice",
        "engine",  # a name: the runtime takes the backend class (`agent.backends.connect`)
        "server",
        "ollama",
        "limits",
        "sandbox",
        "sessions",  # a file path: the runtime takes a `Store`
    },
    "OllamaSettings": {"host", "options"},
    # Arguments of `agent.backends.connect`, and the name of the API key's variable.
    "ServerSettings": {"hosts", "api_key_env", "concurrency"},
    # A custom tool's import path and its `Tool` options (name, description, timeout...).
    "CustomTool": {
        "import_",
        "name",
        "description",
        "timeout",
        "retries",
        "max_output",
        "approval",
    },
    "MCPEntry": {"mcp"},  # its settings are `MCPServerSettings`
}


def _runtime_types() -> dict[type[BaseModel], tuple[type, set[str]]]:
    """Each config model made from a runtime dataclass: (that dataclass, its fields left out)."""
    made: dict[type[BaseModel], tuple[type, set[str]]] = {
        LimitsSettings: (Limits, set()),
        OllamaOptions: (GenerateOptions, {"keep_alive"}),  # beside `options`, under `ollama:`
        settings_spec(MCPServerSettings): (MCPServerSettings, set()),
    }
    for name, toolset in toolsets().items():
        # A toolset entry takes its settings, plus the `Tool` options any tool entry takes.
        made[entry_settings(name)] = (toolset.settings, set())
        if toolset.section is not None and toolset.section_settings is not None:
            spec = section_spec(toolset.section)
            assert spec is not None, name
            made[spec] = (toolset.section_settings, set())
    return made


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation refers to, through unions, lists and `Annotated`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _walk(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> None:
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for inner in _models(field.annotation):
            _walk(inner, seen)


def _same_field(model: type[BaseModel], name: str, dataclass: type, *, checks: int = 0) -> None:
    # What the dataclass's field makes, next to what the config model has (`checks`: the
    # config's own validators added on top).
    made = spec_model("Made", None, {name: spec_fields(dataclass)[name]}).model_fields[name]
    field = model.model_fields[name]
    assert field.description == made.description, name
    assert field.get_default(call_default_factory=True) == made.get_default(
        call_default_factory=True
    ), name
    assert repr(field.metadata[: len(field.metadata) - checks]) == repr(made.metadata), name
    assert repr(field.annotation) == repr(made.annotation), name


def test_no_setting_is_defined_twice() -> None:
    seen: dict[str, type[BaseModel]] = {}
    _walk(AgentConfig, seen)
    made = _runtime_types()
    for model in seen.values():
        if model in made:
            # Every field of a made model is its dataclass's, with its default, bound and doc.
            dataclass, left_out = made[model]
            names = {f.name for f in dataclasses.fields(dataclass)} - left_out
            assert set(model.model_fields) - set(TOOL_OPTIONS) == names, model.__name__
            for name in names:
                _same_field(model, name, dataclass)
        elif issubclass(model, ToolsetEntry):
            assert model is toolset_entry(next(iter(model.model_fields)))
        else:
            # A hand-written model holds only what the runtime has no type for.
            assert set(model.model_fields) - {"keep_alive"} == CONFIG_ONLY[model.__name__]
    # `ollama.keep_alive` is `GenerateOptions.keep_alive` (with the duration check on top).
    _same_field(OllamaSettings, "keep_alive", GenerateOptions, checks=1)
    assert {LimitsSettings, OllamaOptions} <= set(seen.values())


def test_config_values_become_the_runtime_types_unchanged(tmp_path: Any) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: x\nollama: {keep_alive: 5m, options: {num_ctx: 4096, stop: [a]}}\n"
        "limits: {max_steps: 2, run_timeout: 1.5}\n"
    )
    agent = load_agent(path)
    assert agent.options == GenerateOptions(num_ctx=4096, stop=("a",), keep_alive="5m")
    assert agent.limits == Limits(max_steps=2, run_timeout=1.5)


def test_limits_check_their_bounds_from_python_too() -> None:
    with pytest.raises(ConfigError) as caught:
        Limits(max_steps=0, max_retries=-1, run_timeout=0)
    assert caught.value.problems == (
        "max_steps must be at least 1, got 0",
        "max_retries must be at least 0, got -1",
        "run_timeout must be positive, got 0",
    )


def test_num_ctx_max_is_a_deprecated_alias_of_num_ctx() -> None:
    with pytest.warns(DeprecationWarning, match=r"num_ctx_max=\.\.\.\) is deprecated"):
        options = GenerateOptions(num_ctx_max=8192, temperature=0.5)
    assert options == GenerateOptions(num_ctx=8192, temperature=0.5)
    with pytest.warns(DeprecationWarning, match="read num_ctx"):
        assert options.num_ctx_max == 8192
    with (
        pytest.raises(TypeError, match="old name of num_ctx"),
        pytest.warns(DeprecationWarning, match="num_ctx_max"),
    ):
        GenerateOptions(num_ctx=1, num_ctx_max=2)
    assert "num_ctx_max" not in {f.name for f in dataclasses.fields(GenerateOptions)}
    assert dataclasses.replace(options, seed=1).num_ctx == 8192


def test_stop_strings_are_kept_as_a_tuple() -> None:
    assert GenerateOptions(stop=["a", "b"]).stop == ("a", "b")
