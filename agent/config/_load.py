"""Read a YAML config file into an `AgentConfig`, or straight into an `Agent`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.config._problems import describe_value, problems_from_validation
from agent.config._spec import AgentConfig
from agent.config._yaml import SourceMap, load_yaml
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.loop import Agent

__all__ = ["config_json_schema", "load_agent", "load_config", "parse_config"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Read and validate a YAML config file.

    `${VAR}` and `${VAR:-default}` are expanded from `env` (default: `os.environ`). Custom tools
    are not imported yet (`load_agent` does that), so this never runs user code.

    Raises `ConfigError`; its message has one `file:line: key: problem` line per problem.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{name}: no such file", path=name) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{name}: is a directory, not a YAML file", path=name) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason})", path=name) from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})", path=name) from exc
    return parse_config(text, file=name, base_dir=Path(name).resolve().parent, env=env)


def parse_config(
    text: str,
    *,
    file: str | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Validate YAML text as a config. `file` names it in messages; custom tools are imported
    from `base_dir` (default: nowhere beyond the Python path)."""
    data, source = load_yaml(text, file=file, env=os.environ if env is None else env)
    where = f"{file}:1: " if file else ""
    if data is None:
        raise ConfigError(f"{where}the config is empty; it needs at least `model:`", path=file)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}a config is a mapping of keys (model:, tools:, ...), "
            f"got {describe_value(data)}",
            path=file,
        )
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, data, source)
        raise ConfigError("\n".join(problems), path=file, problems=problems) from exc
    return _attach(config, source, base_dir)


def _attach(config: AgentConfig, source: SourceMap, base_dir: Path | None) -> AgentConfig:
    config._source = source
    config._base_dir = base_dir
    return config


def load_agent(path: str | os.PathLike[str], **overrides: Any) -> Agent:
    """Build an `Agent` from a YAML config file.

    `overrides` are `Agent` keyword arguments that win over the file, for instance
    `load_agent("config.yaml", host="http://gpu-box:11434")` or `backend=my_backend`.
    Raises `ConfigError` (invalid file, a custom tool that does not import, a `tool_choice`
    naming no tool). A `code` tool without a working bubblewrap (and without `sandbox: none`)
    is still built, with a `RuntimeWarning`: its calls fail, saying how to install it.
    """
    from agent.config._build import build_agent

    return build_agent(load_config(path), **overrides)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (Draft 2020-12), for editors and validators."""
    schema = AgentConfig.model_json_schema(by_alias=True)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "llama-agent config",
        **{k: v for k, v in schema.items() if k != "title"},
    }
