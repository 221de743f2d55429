"""An `AgentConfig` made real: its tools built (toolsets and imports), then an `Agent`.

Custom tools are found by their `package.module:function` path, relative to the config; every
failure says why in one line: the module is not there, it imports something missing, it raised
while importing, the attribute is misspelt, or a name shadows a module elsewhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.backends import Backend, GenerateOptions
from agent.config._spec import (
    AgentConfig,
    CustomTool,
    KeyPath,
    MCPEntry,
    ToolsetEntry,
    suggest,
    toolsets,
)
from agent.errors import ConfigError, DeveloperError, ToolDefinitionError
from agent.llama3 import model_family
from agent.toolkit import MCPServerSettings, MCPTools, Tool, Toolbox, ToolsetContext, ToolSource

if TYPE_CHECKING:
    from agent.loop import Agent

__all__ = [
    "ImportProblem",
    "api_key",
    "build_agent",
    "build_backend",
    "build_tools",
    "generate_options",
    "import_object",
    "section_settings",
    "server_hosts",
    "with_hosts",
]


def build_agent(config: AgentConfig, **overrides: Any) -> Agent:
    """The `Agent` a config describes; `overrides` are `Agent` keyword arguments that win."""
    from agent.loop import Agent, Limits, SQLiteStore

    if overrides.get("host") is not None:
        # `load_agent(path, host=...)`: that host in place of the config's, for its engine.
        config = with_hosts(config, [overrides.pop("host")])
    overrides.pop("host", None)
    kwargs: dict[str, Any] = {
        "model": config.model,
        "system": config.system,
        "options": generate_options(config),
        "limits": Limits(**config.limits.model_dump()),
        "tool_format": config.tool_format,
        "tool_choice": config.tool_choice,
    }
    if config.name is not None:
        kwargs["name"] = config.name  # the traces' `invoke_agent {name}`
    if "backend" not in overrides:
        hosts = server_hosts(config)
        server = config.server
        plain = config.engine == "ollama" and len(hosts) == 1
        if plain and server.concurrency is None and server.api_key_env is None:
            kwargs["host"] = hosts[0]  # the agent makes (and closes) its OllamaBackend
        else:
            kwargs["backend"] = backend = build_backend(config)
            kwargs["resources"] = [backend]  # made here: closed with the agent
    if config.sessions is not None:
        path = Path(config.sessions).expanduser()
        if config.base_dir is not None and not path.is_absolute():
            path = config.base_dir / path
        kwargs["store"] = store = SQLiteStore(path)
        kwargs["resources"] = [*kwargs.get("resources", ()), store]  # closed with the agent
    if "tools" not in overrides:
        # What the tools hold (the code tool's sandbox pool) is closed with the agent.
        resources: list[Any] = []
        model = overrides.get("model", config.model)
        kwargs["tools"] = build_tools(config, resources=resources, model=model)
        kwargs["resources"] = [
            *kwargs.get("resources", ()),
            *resources,
            *overrides.pop("resources", ()),
        ]
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
    if choice in ("auto", "required", "none"):
        return
    if any(isinstance(t, ToolSource) and not isinstance(t, Tool) for t in tools):
        return  # the servers' tools are known once the agent opens them; it checks then
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


def with_hosts(
    config: AgentConfig, hosts: Sequence[str] = (), *, engine: str | None = None
) -> AgentConfig:
    """`config` with these hosts (`--host`) and engine (`--engine`) in place of its own."""
    update: dict[str, Any] = {}
    if engine is not None:
        update["engine"] = engine
    if hosts:
        update["server"] = config.server.model_copy(update={"hosts": list(hosts)})
        update["ollama"] = config.ollama.model_copy(update={"host": None})
    elif engine is not None and engine != "ollama" and config.ollama.host:
        # The config's Ollama host is not the other engine's: its local default instead.
        update["ollama"] = config.ollama.model_copy(update={"host": None})
    if not update:
        return config
    return config.model_copy(update=update)  # private attributes (source lines) are kept


def server_hosts(config: AgentConfig) -> list[str | None]:
    """The hosts the config names for its engine: `server.hosts`, else `ollama.host` (Ollama
    only), else `[None]` (the backend's default: `OLLAMA_HOST` for Ollama, localhost for others).
    """
    where = config.source.where
    if config.server.hosts and config.ollama.host:
        raise ConfigError(
            f"{where(('ollama', 'host'))}: give the host in ollama.host or in server.hosts, not "
            "both (server.hosts takes one host or several)",
            path=config.source.file,
        )
    if config.server.hosts:
        return list(config.server.hosts)
    if config.ollama.host:
        if config.engine != "ollama":
            raise ConfigError(
                f"{where(('ollama', 'host'))}: ollama.host is Ollama's, but the engine is "
                f"{config.engine}; write the {config.engine} server's URL in server.hosts",
                path=config.source.file,
            )
        return [config.ollama.host]
    return [None]


def api_key(config: AgentConfig) -> str | None:
    """The engine's API key, from the variable `server.api_key_env` names (else the engine's
    usual one, when set); None when there is none."""
    from agent.backends import ENGINES

    named = config.server.api_key_env
    where = config.source.where(("server", "api_key_env"))
    if named is None:
        default = ENGINES[config.engine].api_key_env
        return (os.environ.get(default) or None) if default else None
    if config.engine == "ollama":
        raise ConfigError(
            f"{where}: Ollama takes no API key; remove server.api_key_env (or put a proxy that "
            "checks keys in front of Ollama)",
            path=config.source.file,
        )
    value = os.environ.get(named)
    if not value:
        raise ConfigError(
            f"{where}: the variable {named} holds the {config.engine} API key, but it is not "
            f"set; export {named}=<key> (the key the server was started with)",
            path=config.source.file,
        )
    return value


def build_backend(config: AgentConfig) -> Backend:
    """The backend of the config's engine and hosts: the engine's own for one host, a
    `PoolBackend` for several. The caller closes it (`aclose()`)."""
    from agent.backends import connect

    hosts = server_hosts(config)
    try:
        return connect(
            config.engine,
            hosts,
            concurrency=config.server.concurrency,
            api_key=api_key(config),
        )
    except ConfigError:
        raise
    except DeveloperError as exc:
        where = config.source.where(("engine",))
        raise ConfigError(f"{where}: {exc}", path=config.source.file) from exc


def generate_options(config: AgentConfig) -> GenerateOptions:
    """The sampling and transport settings under `ollama:`."""
    # The spec's fields are the dataclass's (`_spec`), so the values pass straight through.
    return GenerateOptions(
        **config.ollama.options.model_dump(), keep_alive=config.ollama.keep_alive
    )


def build_tools(
    config: AgentConfig, *, resources: list[Any] | None = None, model: str | None = None
) -> list[Tool | ToolSource]:
    """Every tool the config lists, in order. Imports custom tools (runs their module code).

    `resources` gets what the tools hold that must be closed (`aclose()`) when done: the code
    tool's `Sandbox`. `model` (default: the config's) picks which names the built-ins are
    offered under when their `names:` is unset.

    Raises `ConfigError` for imports that fail and for two tools with one name (all problems
    at once). A `code` tool without a usable sandbox is built: its calls fail, saying how to
    install bubblewrap (see `llama_agent_tools.code`). An `mcp:` entry is an `MCPTools`, whose
    tools are known once the agent opens it (where a clash of names is an error naming both).
    """
    model = model or config.model
    built: list[Tool | ToolSource] = []
    problems: list[str] = []
    first: dict[str, str] = {}
    for index, entry in enumerate(config.tools):
        path: KeyPath = ("tools", index)
        try:
            if isinstance(entry, MCPEntry):
                built.append(_mcp_tools(config, entry, path))
                continue
            made = _entry_tools(config, entry, path, resources, model)
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


def _entry_tools(
    config: AgentConfig,
    entry: object,
    path: KeyPath,
    resources: list[Any] | None,
    model: str,
) -> list[Tool]:
    if isinstance(entry, str) and ":" not in entry:
        return _toolset_tools(config, entry, None, resources, model)
    if isinstance(entry, ToolsetEntry):
        return _toolset_tools(config, entry.toolset, entry.settings, resources, model)
    if isinstance(entry, str):
        return _custom(config, CustomTool(import_=entry), path)
    if isinstance(entry, CustomTool):
        return _custom(config, entry, (*path, "import"))
    raise AssertionError(f"unexpected tool entry {entry!r}")  # pragma: no cover


def _mcp_tools(config: AgentConfig, entry: MCPEntry, path: KeyPath) -> MCPTools:
    try:
        settings = MCPServerSettings(**entry.mcp.model_dump())
        if settings.cwd is not None and config.base_dir is not None:
            settings = dataclasses.replace(settings, cwd=str(config.base_dir / settings.cwd))
        return MCPTools.from_settings(settings)
    except DeveloperError as exc:
        raise _Problem(str(exc), (*path, "mcp")) from exc


def _toolset_tools(
    config: AgentConfig, name: str, spec: Any, resources: list[Any] | None, model: str
) -> list[Tool]:
    toolset = toolsets()[name]
    written = spec.model_dump() if spec is not None else {}
    approval = written.pop("approval", None)  # any entry's, not the toolset's own setting
    settings = toolset.settings(**written)
    section = section_settings(config, name)
    context = ToolsetContext(model=model, family=model_family(model), section=section)
    made = list(toolset.build(settings, context))
    if resources is not None:
        resources.extend(context.resources)
    if approval is not None:
        made = [tool.with_options(approval=approval) for tool in made]
    return made


def section_settings(config: AgentConfig, name: str) -> Any:
    """The settings of the top-level section toolset `name` owns, as its dataclass (or None)."""
    toolset = toolsets()[name]
    if toolset.section is None or toolset.section_settings is None:
        return None
    written = getattr(config, toolset.section, None)
    return toolset.section_settings(**(written.model_dump() if written is not None else {}))


def _custom(config: AgentConfig, spec: CustomTool, path: KeyPath) -> list[Tool]:
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


# --- custom tools by import path ----------------------------------------------------------------


class ImportProblem(Exception):
    """Why an import path could not be resolved (the message is one line)."""


def import_object(path: str, *, base_dir: Path | None) -> object:
    """Import `module:attr` (attr may be dotted), looking in `base_dir` first."""
    module_name, _, attr_path = path.partition(":")
    with _search_first(base_dir):
        module = _import_module(module_name, base_dir)
    obj: object = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = suggest(attr, names)
            also = f" (did you mean '{hint}'?)" if hint else ""
            raise ImportProblem(f"'{walked}' has no attribute '{attr}'{also}")
        obj = getattr(obj, attr)
        walked += f"{'.' if walked != module_name else ':'}{attr}"
    return obj


@contextmanager
def _search_first(base_dir: Path | None) -> Iterator[None]:
    # Only for the import itself: a config folder left on sys.path would shadow other modules
    # (a `random.py` beside the config) for the rest of the process.
    entry = str(base_dir) if base_dir is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.insert(0, str(entry))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(entry))


def _import_module(name: str, base_dir: Path | None) -> object:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            where = f" in {base_dir} or" if base_dir is not None else ""
            raise ImportProblem(
                f"cannot import '{name}': no module named '{missing}'{where} on the Python path"
            ) from exc
        raise ImportProblem(
            f"cannot import '{name}': it needs '{missing}', which is not installed ({exc})"
        ) from exc
    except SyntaxError as exc:
        where = f"{Path(exc.filename).name}:{exc.lineno}" if exc.filename else "?"
        raise ImportProblem(f"cannot import '{name}': syntax error at {where}: {exc.msg}") from exc
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise ImportProblem(
            f"cannot import '{name}': it raised {type(exc).__name__}: {exc}{where}"
        ) from exc
    _check_not_shadowed(name, module, base_dir)
    return module


def _check_not_shadowed(name: str, module: object, base_dir: Path | None) -> None:
    # A `json.py` beside a config loses to the already-imported standard module, and the
    # error would otherwise be a baffling missing attribute.
    if base_dir is None:
        return
    top = name.split(".")[0]
    local = [base_dir / f"{top}.py", base_dir / top / "__init__.py"]
    local_file = next((p for p in local if p.is_file()), None)
    if local_file is None:
        return
    top_module = sys.modules.get(top)
    loaded = getattr(top_module, "__file__", None)
    if loaded is not None and Path(loaded).resolve() != local_file.resolve():
        raise ImportProblem(
            f"'{top}' is already imported from {loaded}, so {local_file} is not used; "
            "rename your module"
        )
