"""An `AgentConfig` made real: its tools built (built-ins and imports), then an `Agent`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from agent.backends import GenerateOptions
from agent.config._base import suggest
from agent.config._imports import ImportProblem, import_object
from agent.config._spec import (
    AgentConfig,
    CodeEntry,
    CodeSettings,
    CustomTool,
    MathEntry,
    MathSettings,
    SearchEntry,
    SearchSettings,
)
from agent.config._tool_spec import Names
from agent.config._yaml import KeyPath
from agent.errors import ConfigError, DeveloperError, ToolDefinitionError
from agent.llama3 import model_family

if TYPE_CHECKING:
    from agent.loop import Agent
    from agent.toolkit import Tool

__all__ = ["build_agent", "build_tools", "default_names", "generate_options"]


def build_agent(config: AgentConfig, **overrides: Any) -> Agent:
    """The `Agent` a config describes; `overrides` are `Agent` keyword arguments that win."""
    from agent.loop import Agent, Limits

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
        # What the tools hold (the code tool's sandbox pool) is closed with the agent.
        resources: list[Any] = []
        model = overrides.get("model", config.model)
        kwargs["tools"] = build_tools(config, resources=resources, model=model)
        kwargs["resources"] = [*resources, *overrides.pop("resources", ())]
    kwargs.update(overrides)
    _check_tool_choice(config, kwargs["tool_choice"], kwargs["tools"])
    try:
        return Agent(**kwargs)
    except ConfigError:
        raise
    except DeveloperError as exc:
        raise ConfigError(str(exc), path=config.source.file) from exc


def _check_tool_choice(config: AgentConfig, choice: str, tools: Any) -> None:
    """A `tool_choice` that names no tool, as a config error at its line."""
    from agent.toolkit import Toolbox

    if choice in ("auto", "required", "none"):
        return
    try:
        toolbox = Toolbox(tools)
    except DeveloperError:
        return  # the Agent reports what is wrong with the tools themselves
    if choice in toolbox:
        return
    names = list(dict.fromkeys((*toolbox.callable_names, *toolbox.names)))
    # A built-in's custom twin that its `names:` setting left out is worth pointing at.
    absent = [twin for twin, (_, native) in _TWINS.items() if native in names]
    hint = suggest(choice, names) or suggest(choice, [t for t in absent if t not in names])
    notes: list[str] = []
    if hint is not None and hint != choice:
        notes.append(f"did you mean '{hint}'?")
    if hint in _TWINS and hint not in names:
        toolset, native = _TWINS[hint]
        note = f"the {toolset} tools offer '{hint}' with `names: custom` or `both`; now they "
        notes.append((note[0].upper() + note[1:] if notes else note) + f"offer '{native}'")
    listed = ", ".join(names) if names else "there are none"
    message = (
        f"{config.source.where(('tool_choice',))}: no tool is named '{choice}'"
        + (f" ({' '.join(notes)})" if notes else "")
        + f"; write auto, required, none or one of the tools ({listed})"
    )
    raise ConfigError(message, path=config.source.file)


# The custom twins of the built-ins: (toolset, the built-in's trained name).
_TWINS = {
    "web_search": ("search", "brave_search"),
    "run_python": ("code", "code_interpreter"),
    "calculate": ("math", "wolfram_alpha"),
}


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


def build_tools(
    config: AgentConfig, *, resources: list[Any] | None = None, model: str | None = None
) -> list[Tool]:
    """Every tool the config lists, in order. Imports custom tools (runs their module code).

    `resources` gets what the tools hold that must be closed (`aclose()`) when done: the code
    tool's `Sandbox`. `model` (default: the config's) picks which names the built-ins are
    offered under when their `names:` is unset (`default_names`).

    Raises `ConfigError` for imports that fail and for two tools with one name (all problems
    at once). A `code` tool without a usable sandbox is built: its calls fail, saying how to
    install bubblewrap (see `tools.code`).
    """
    family = model_family(model or config.model)
    built: list[Tool] = []
    problems: list[str] = []
    first: dict[str, str] = {}
    for index, entry in enumerate(config.tools):
        path: KeyPath = ("tools", index)
        try:
            made = _entry_tools(config, entry, path, resources, family)
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


def default_names(toolset: str, family: str) -> Names:
    """Which names a built-in toolset is offered under when the config does not say.

    Only the trained names for Llama 3.1 and 3.3 (3.3's prompt guide repeats 3.1's built-in
    tool sections). Llama 3.2's guide documents the code interpreter but neither
    `brave_search` nor `wolfram_alpha`, so there search and math get their custom names.
    """
    return "custom" if family == "3.2" and toolset in ("search", "math") else "native"


def _entry_tools(
    config: AgentConfig,
    entry: object,
    path: KeyPath,
    resources: list[Any] | None = None,
    family: str = "3.1",
) -> list[Tool]:
    if entry == "search" or isinstance(entry, SearchEntry):
        settings = entry.search if isinstance(entry, SearchEntry) else None
        return _search(settings or SearchSettings(), family)
    if entry == "code" or isinstance(entry, CodeEntry):
        code_settings = entry.code if isinstance(entry, CodeEntry) else None
        return _code(config, code_settings or CodeSettings(), resources, family)
    if entry == "math" or isinstance(entry, MathEntry):
        math_settings = (entry.math if isinstance(entry, MathEntry) else None) or MathSettings()
        return _builtin("math", names=math_settings.names or default_names("math", family))
    if isinstance(entry, str):
        return _custom(config, CustomTool(import_=entry), path)
    if isinstance(entry, CustomTool):
        return _custom(config, entry, (*path, "import"))
    raise AssertionError(f"unexpected tool entry {entry!r}")  # pragma: no cover


def _builtin(name: str, **settings: Any) -> list[Tool]:
    from tools import BUILTIN_TOOLSETS

    return list(BUILTIN_TOOLSETS[name](**settings))


def _search(settings: SearchSettings, family: str) -> list[Tool]:
    names = settings.names or default_names("search", family)
    return _builtin("search", **settings.model_dump(exclude={"names"}), names=names)


def _code(
    config: AgentConfig,
    settings: CodeSettings,
    resources: list[Any] | None = None,
    family: str = "3.1",
) -> list[Tool]:
    from tools import Sandbox, SandboxLimits

    sandbox = config.sandbox
    given = sandbox.model_dump(exclude={"mode"}, exclude_none=True)
    limits = SandboxLimits(**given)
    if settings.timeout is not None:
        limits = dataclasses.replace(limits, wall_seconds=settings.timeout)
    # Made here, not inside code_tools, so that whoever owns the tools can close its pool.
    runner = Sandbox(mode=sandbox.mode, limits=limits, pool_size=settings.pool_size)
    if resources is not None:
        resources.append(runner)
    return _builtin("code", runner=runner, names=settings.names or default_names("code", family))


def _custom(config: AgentConfig, spec: CustomTool, path: KeyPath) -> list[Tool]:
    from agent.toolkit import Tool

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
