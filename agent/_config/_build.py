"""An `AgentConfig` made real: its tools built (built-ins and imports), then an `Agent`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent._config._imports import ImportProblem, import_object
from agent._config._spec import (
    AgentConfig,
    CodeEntry,
    CodeSettings,
    CustomTool,
    MathEntry,
    SearchEntry,
    SearchSettings,
)
from agent._config._yaml import KeyPath
from agent.backends._base import GenerateOptions
from agent.errors import ConfigError, DeveloperError, ToolDefinitionError

if TYPE_CHECKING:
    from agent._loop import Agent
    from agent._toolkit import Tool

__all__ = ["build_agent", "build_tools", "generate_options"]


def build_agent(config: AgentConfig, **overrides: Any) -> Agent:
    """The `Agent` a config describes; `overrides` are `Agent` keyword arguments that win."""
    from agent._loop import Agent, Limits

    kwargs: dict[str, Any] = {
        "model": config.model,
        "system": config.system,
        "host": config.ollama.host,
        "options": generate_options(config),
        "limits": Limits(**config.limits.model_dump()),
        "tool_format": config.tool_format,
        "tool_choice": config.tool_choice,
    }
    if "tools" not in overrides:
        kwargs["tools"] = build_tools(config)
    kwargs.update(overrides)
    try:
        return Agent(**kwargs)
    except ConfigError:
        raise
    except DeveloperError as exc:
        # A tool_choice naming no tool, and such: point at the file.
        where = config.source.where(("tool_choice",)) if "tool_choice" in str(exc) else ""
        message = f"{where}: {exc}" if where else str(exc)
        raise ConfigError(message, path=config.source.file) from exc


def generate_options(config: AgentConfig) -> GenerateOptions:
    """The sampling and transport settings under `ollama:`."""
    opts = config.ollama.options
    return GenerateOptions(
        temperature=opts.temperature,
        seed=opts.seed,
        top_p=opts.top_p,
        top_k=opts.top_k,
        num_predict=opts.num_predict,
        stop=tuple(opts.stop),
        keep_alive=config.ollama.keep_alive,
        num_ctx_max=opts.num_ctx,
    )


def build_tools(config: AgentConfig) -> list[Tool]:
    """Every tool the config lists, in order. Imports custom tools (runs their module code).

    Raises `ConfigError` for imports that fail and for two tools with one name (all problems
    at once), and `SandboxUnavailableError` for the `code` tool without a usable sandbox.
    """
    built: list[Tool] = []
    problems: list[str] = []
    first: dict[str, str] = {}
    for index, entry in enumerate(config.tools):
        path: KeyPath = ("tools", index)
        try:
            made = _entry_tools(config, entry, path)
        except _Problem as exc:
            problems.append(f"{config.source.where(exc.path)}: {exc}")
            continue
        for tool in made:
            where = config.source.where(path)
            if tool.name in first:
                problems.append(
                    f"{where}: a tool named '{tool.name}' is already defined by "
                    f"{first[tool.name]}; give one of them another `name:`"
                )
                continue
            first[tool.name] = path_key(path)
            built.append(tool)
    if problems:
        raise ConfigError("\n".join(problems), path=config.source.file, problems=problems)
    return built


def path_key(path: KeyPath) -> str:
    return f"{path[0]}[{path[1]}]"


class _Problem(Exception):
    def __init__(self, message: str, path: KeyPath) -> None:
        super().__init__(message)
        self.path = path


def _entry_tools(config: AgentConfig, entry: object, path: KeyPath) -> list[Tool]:
    if entry == "search" or isinstance(entry, SearchEntry):
        settings = entry.search if isinstance(entry, SearchEntry) else None
        return _search(settings or SearchSettings())
    if entry == "code" or isinstance(entry, CodeEntry):
        code_settings = entry.code if isinstance(entry, CodeEntry) else None
        return _code(config, code_settings or CodeSettings())
    if entry == "math" or isinstance(entry, MathEntry):
        return _builtin("math")
    if isinstance(entry, str):
        return _custom(config, CustomTool(import_=entry), path)
    if isinstance(entry, CustomTool):
        return _custom(config, entry, (*path, "import"))
    raise AssertionError(f"unexpected tool entry {entry!r}")  # pragma: no cover


def _builtin(name: str, **settings: Any) -> list[Tool]:
    from tools import BUILTIN_TOOLSETS

    return list(BUILTIN_TOOLSETS[name](**settings))


def _search(settings: SearchSettings) -> list[Tool]:
    return _builtin("search", **settings.model_dump())


def _code(config: AgentConfig, settings: CodeSettings) -> list[Tool]:
    from tools import SandboxLimits

    sandbox = config.sandbox
    given = sandbox.model_dump(exclude={"mode"}, exclude_none=True)
    kwargs: dict[str, Any] = {"sandbox": sandbox.mode, "pool_size": settings.pool_size}
    if given:
        kwargs["limits"] = SandboxLimits(**given)
    if settings.timeout is not None:
        kwargs["timeout"] = settings.timeout
    return _builtin("code", **kwargs)


def _custom(config: AgentConfig, spec: CustomTool, path: KeyPath) -> list[Tool]:
    from agent._toolkit import Tool

    try:
        obj = import_object(spec.import_, base_dir=config.base_dir)
    except ImportProblem as exc:
        raise _Problem(str(exc), path) from exc
    overrides = spec.model_dump(exclude={"import_"}, exclude_none=True)
    if isinstance(obj, Tool):
        return [_with_overrides(obj, overrides, spec, path)]
    if isinstance(obj, list | tuple) and obj and all(isinstance(t, Tool) for t in obj):
        if {"name", "description"} & overrides.keys():
            raise _Problem(
                f"'{spec.import_}' is a list of tools; `name` and `description` apply to one tool",
                path,
            )
        return [_with_overrides(t, overrides, spec, path) for t in obj]
    if callable(obj) and not isinstance(obj, type):
        try:
            return [Tool.from_function(obj, **overrides)]
        except ToolDefinitionError as exc:
            raise _Problem(f"cannot make a tool of '{spec.import_}': {exc}", path) from exc
    kind = "a class" if isinstance(obj, type) else f"a {type(obj).__name__}"
    raise _Problem(
        f"'{spec.import_}' is {kind}; it must be a function, a Tool, or a list of Tools", path
    )


def _with_overrides(tool: Tool, overrides: dict[str, Any], spec: CustomTool, path: KeyPath) -> Tool:
    if not overrides:
        return tool
    if "name" in overrides:
        raise _Problem(
            f"'{spec.import_}' is already a tool named '{tool.name}'; rename it where it is "
            "defined, or import the plain function",
            path,
        )
    try:
        return tool.with_options(**overrides)
    except ToolDefinitionError as exc:
        raise _Problem(f"cannot apply the settings to '{spec.import_}': {exc}", path) from exc
