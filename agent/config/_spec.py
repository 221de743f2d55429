"""The YAML config as strict pydantic models: every key is known, every value typed.

A setting the runtime has is defined once, on its runtime dataclass (`Limits`, `GenerateOptions`,
a toolset's settings): the models here are made from those (`spec_fields`), so a default, a bound
(`Annotated[int, Ge(1)]`) or a description lives in one place. Field docstrings become the JSON
Schema's descriptions, which editors show on hover. The toolsets a config lists (`tools: [search,
code, math]`) and their settings come from the registry (`agent.toolkit.find_toolsets`, fed by
the `llama_agent.tools` entry points): each toolset's own settings dataclass is the spec of its
entry, and a toolset may own a top-level section (the code tools' `sandbox:`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import re
import textwrap
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from agent.backends import GenerateOptions
from agent.errors import DeveloperError
from agent.loop import Limits
from agent.toolkit import MCPServerSettings, Toolset, find_toolsets

__all__ = [
    "CUSTOM_ERRORS",
    "TOOL_TAGS",
    "AgentConfig",
    "CustomTool",
    "KeyPath",
    "LimitsSettings",
    "MCPEntry",
    "OllamaOptions",
    "OllamaSettings",
    "ServerSettings",
    "SourceMap",
    "Spec",
    "ToolEntry",
    "ToolsetEntry",
    "format_key",
    "section_spec",
    "settings_spec",
    "spec_fields",
    "spec_model",
    "suggest",
    "toolset_entry",
    "toolsets",
]

_DURATION = re.compile(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|-?\d+(\.\d+)?")
APPROVAL_DOC = (
    "Each call waits for approval before it runs (the CLI asks; `--approve` says yes to all). "
    "Unset: the tool's own setting (the code tools ask when `sandbox` is `none`)."
)
# `approval`, a `Tool` option every tool entry takes (custom or built-in).
TOOL_OPTIONS: Mapping[str, tuple[Any, Any]] = {
    "approval": (bool | None, Field(default=None, description=APPROVAL_DOC))
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


# --- where values were written -----------------------------------------------------------------

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, kw_only=True)
class SourceMap:
    """Where each value of a YAML document was written: file name and 1-based lines by path."""

    file: str | None = None
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None

    def where(self, path: KeyPath) -> str:
        """`file:line: key` for messages; parts that are unknown are left out."""
        parts = []
        if self.file is not None:
            line = self.line(path)
            parts.append(self.file if line is None else f"{self.file}:{line}")
        key = format_key(path)
        if key:
            parts.append(key)
        return ": ".join(parts)


def format_key(path: KeyPath) -> str:
    """`("tools", 2, "timeout")` as `tools[2].timeout`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --- the base of every model -------------------------------------------------------------------


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """The closest of `choices` to a misspelt `word`, if one is close enough."""
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


class Spec(BaseModel):
    """Strict: unknown keys and wrong types are errors; values are not coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Unknown keys are reported with the allowed ones (not as pydantic's bare "extra
        # inputs"), and the known keys beside them are still checked, so one run shows all.
        if not isinstance(data, dict):
            return handler(data)
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        unknown = [key for key in data if key not in allowed and key not in cls.model_fields]
        if not unknown:
            return handler(data)
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_keys", "unknown keys {keys}", {"keys": unknown, "allowed": allowed}
                ),
                loc=(),
                input=data,
            )
        ]
        try:
            handler({k: v for k, v in data.items() if k not in unknown})
        except ValidationError as exc:
            errors.extend(_reraise(error) for error in exc.errors())
        raise ValidationError.from_exception_data(cls.__name__, errors)


CUSTOM_ERRORS = frozenset(
    {"unknown_keys", "unknown_builtin", "import_path", "duration", "tool_entry", "size"}
    | {"sequence_str"}  # pydantic's own, but raised from Python: not a core error type
)


def _reraise(error: ErrorDetails) -> InitErrorDetails:
    ctx = error.get("ctx", {})
    kind = error["type"]
    return InitErrorDetails(
        type=PydanticCustomError(kind, error["msg"], ctx) if kind in CUSTOM_ERRORS else kind,
        loc=error["loc"],
        input=error["input"],
        ctx=ctx,
    )


# --- settings dataclasses as config models ----------------------------------------------------


def spec_fields(settings: type) -> dict[str, tuple[Any, FieldInfo]]:
    """The fields of a settings dataclass as pydantic fields: type, bounds, default, docstring."""
    hints = typing.get_type_hints(settings, include_extras=True)
    docs = _field_docs(settings)
    fields: dict[str, tuple[Any, FieldInfo]] = {}
    for item in dataclasses.fields(settings):
        if item.default is not dataclasses.MISSING:
            default = Field(default=item.default, description=docs.get(item.name))
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory, description=docs.get(item.name))
        else:
            raise DeveloperError(f"{settings.__name__}.{item.name} needs a default")
        fields[item.name] = (hints[item.name], default)
    return fields


def spec_model(name: str, doc: str | None, fields: Mapping[str, tuple[Any, Any]]) -> Any:
    """A strict config model with these fields (typed `Any`: mypy cannot see made models)."""
    return create_model(name, __base__=Spec, __doc__=doc, **fields)  # type: ignore[call-overload]


_SPECS: dict[type, type[Spec]] = {}


def settings_spec(settings: type) -> type[Spec]:
    """The strict config model of a settings dataclass: its fields, defaults and docstrings."""
    if settings not in _SPECS:
        _SPECS[settings] = spec_model(settings.__name__, settings.__doc__, spec_fields(settings))
    return _SPECS[settings]


def _field_docs(cls: type) -> dict[str, str]:
    """`field: type` followed by a string: that string, for each field of `cls` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


# --- ollama and limits: the runtime's own types -------------------------------------------------


def _host(value: str | None) -> str | None:
    # The backend's own parser, so YAML, OLLAMA_HOST and --host accept the same forms.
    from agent.backends import parse_host

    if value:
        try:
            parse_host(value)
        except ValueError as exc:
            raise PydanticCustomError("host", "{message}", {"message": str(exc)}) from None
    return value


def _duration(value: str | float | None) -> str | float | None:
    if isinstance(value, str) and not _DURATION.fullmatch(value.strip()):
        raise PydanticCustomError(
            "duration",
            "'{value}' is not a duration; write seconds (300), or a duration such as "
            "30s, 5m, 1h30m (negative keeps the model loaded)",
            {"value": value},
        )
    return value


_OPTIONS = spec_fields(GenerateOptions)
_KEEP_ALIVE, _KEEP_ALIVE_FIELD = _OPTIONS.pop("keep_alive")  # `ollama.keep_alive`, beside options

OllamaOptions = spec_model("OllamaOptions", "Sampling options sent with every request.", _OPTIONS)
OllamaSettings = spec_model(
    "OllamaSettings",
    "Where the model is served and how.",
    {
        "host": (
            Annotated[str | None, AfterValidator(_host)],
            Field(
                default=None,
                description="Ollama's URL. Unset: `OLLAMA_HOST`, else http://127.0.0.1:11434. "
                "`--host` overrides both.",
            ),
        ),
        "keep_alive": (Annotated[_KEEP_ALIVE, AfterValidator(_duration)], _KEEP_ALIVE_FIELD),
        "options": (OllamaOptions, Field(default=OllamaOptions(), description="Sampling options.")),
    },
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _hosts(value: Any) -> Any:
    # One host may be written without the list.
    return [value] if isinstance(value, str) else value


def _unique(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise PydanticCustomError("hosts", "a host is listed twice", {})
    return value


class ServerSettings(Spec):
    """Where the engine (`engine:`) serves the model: one host or a pool of hosts."""

    hosts: Annotated[
        list[Annotated[str, AfterValidator(_host)]],
        BeforeValidator(_hosts, json_schema_input_type=str | list[str]),
        AfterValidator(_unique),
    ] = []
    """The engine's URL, or several: a pool (each run stays on one host, new runs go to the
    least-loaded one, a host that fails is taken out and retried). Unset: `ollama.host` for
    Ollama (else `OLLAMA_HOST`, else http://127.0.0.1:11434), the engine's local default for
    the others (vLLM :8000, SGLang :30000, llama-server :8080). `--host` (repeatable) overrides
    it."""
    api_key_env: Annotated[str, Field(pattern=_ENV_NAME.pattern)] | None = None
    """The environment variable that holds the engine's API key (sent as a bearer token),
    never the key itself. Unset: `VLLM_API_KEY` for vLLM, `LLAMA_API_KEY` for llama-server, when
    set. Ollama takes no key."""
    concurrency: Annotated[int, Field(ge=1)] | None = None
    """At most this many requests in flight per host; the others wait. Unset: no limit here
    (the server queues them)."""


LimitsSettings = spec_model(
    "LimitsSettings",
    "When a run stops even though the model has not answered (its status says which).",
    spec_fields(Limits),
)


if TYPE_CHECKING:  # made at run time, so mypy cannot see their fields
    _Ollama = Any
    _Limits = Any
else:
    _Ollama = OllamaSettings
    _Limits = LimitsSettings


# --- toolsets ----------------------------------------------------------------------------------


def toolsets() -> dict[str, Toolset[Any]]:
    """The toolsets a config may list: those registered when `agent.config` was imported."""
    return dict(_TOOLSETS)


def _registered() -> dict[str, Toolset[Any]]:
    try:
        return dict(find_toolsets())
    except DeveloperError as exc:  # a broken plugin must not break every config
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return {}


class ToolsetEntry(Spec):
    """`- name:` with a toolset's settings under it (the base of each toolset's entry model)."""

    @property
    def toolset(self) -> str:
        """The toolset's name: the entry's one key."""
        return next(iter(type(self).model_fields))

    @property
    def settings(self) -> Spec | None:
        """The settings written under the key (None: the defaults)."""
        value: Spec | None = getattr(self, self.toolset)
        return value


@functools.cache
def toolset_entry(name: str) -> type[ToolsetEntry]:
    """The model of `- name: {settings}` for a registered toolset."""
    spec = entry_settings(name)
    entry: type[ToolsetEntry] = create_model(  # type: ignore[call-overload]
        f"{name.capitalize()}Entry",
        __base__=ToolsetEntry,
        __doc__=f"`- {name}:` with settings under it.",
        **{name: (spec | None, ...)},
    )
    return entry


@functools.cache
def entry_settings(name: str) -> type[Spec]:
    """What `- name:` takes: the toolset's settings, and the `Tool` options (`approval`)."""
    settings = _TOOLSETS[name].settings
    model: type[Spec] = spec_model(
        settings.__name__, settings.__doc__, {**spec_fields(settings), **TOOL_OPTIONS}
    )
    return model


def section_spec(section: str) -> type[Spec] | None:
    """The model of a top-level section a registered toolset owns (None: no toolset owns it)."""
    for toolset in _TOOLSETS.values():
        if toolset.section == section and toolset.section_settings is not None:
            return settings_spec(toolset.section_settings)
    return None


def _shorthand(section: str) -> Any:
    field = next((t.section_shorthand for t in _TOOLSETS.values() if t.section == section), None)

    def expand(value: Any) -> Any:
        return {field: value} if field is not None and isinstance(value, str) else value

    return expand


_TOOLSETS = _registered()
BUILTIN_NAMES = tuple(_TOOLSETS)


class CustomTool(Spec):
    """A tool of your own: a function (or a `Tool`, or a list of them) found by import path."""

    import_: str = Field(alias="import")
    """`package.module:function`, importable from the config file's folder or the environment."""
    name: str | None = None
    """The name the model sees. Unset: the function's name."""
    description: str | None = None
    """What the model is told the tool does. Unset: the docstring's summary."""
    timeout: Annotated[float, Field(gt=0)] | None = None
    """Seconds per call."""
    retries: Annotated[int, Field(ge=0)] | None = None
    """Failed calls in a row this tool tolerates before the run ends."""
    max_output: Annotated[int, Field(ge=1)] | None = None
    """Characters of the result shown to the model."""
    approval: bool | None = TOOL_OPTIONS["approval"][1]

    @field_validator("import_")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_import_path(value)


# `- mcp:`: `MCPServerSettings`, the settings `MCPTools` takes, defined there once.
if TYPE_CHECKING:
    _MCPSettings = Any
else:
    _MCPSettings = settings_spec(MCPServerSettings)


class MCPEntry(Spec):
    """`- mcp: {...}`: the tools of an MCP server."""

    mcp: _MCPSettings


def _check_import_path(value: str) -> str:
    if not _IMPORT_PATH.fullmatch(value):
        raise PydanticCustomError(
            "import_path",
            "'{value}' is not an import path; write package.module:function",
            {"value": value},
        )
    return value


def _reject_entry(value: Any) -> Any:
    if isinstance(value, str):
        hint = suggest(value, BUILTIN_NAMES)
        if hint:
            raise PydanticCustomError(
                "unknown_builtin",
                "unknown built-in '{name}' (did you mean '{hint}'?)",
                {"name": value, "hint": hint},
            )
        raise PydanticCustomError(
            "unknown_builtin",
            "unknown built-in '{name}'; the built-ins are {allowed}, and a tool of your own is "
            "written package.module:function",
            {"name": value, "allowed": ", ".join(BUILTIN_NAMES)},
        )
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        hint = suggest(str(key), [*BUILTIN_NAMES, "import", "mcp"])
        if hint:
            raise PydanticCustomError(
                "unknown_builtin",
                "unknown tool key '{name}' (did you mean '{hint}'?)",
                {"name": key, "hint": hint},
            )
    raise PydanticCustomError(
        "tool_entry",
        "a tool is a built-in name ({allowed}), an import path package.module:function, "
        "a built-in name as a key with its settings under it, a mapping with `import:`, "
        "or `mcp:` with an MCP server's command or url",
        {"allowed": ", ".join(BUILTIN_NAMES)},
    )


def _tool_tag(value: Any) -> str:
    if isinstance(value, str):
        if value in BUILTIN_NAMES:
            return "builtin"
        return "path" if ":" in value else "invalid"
    if isinstance(value, dict):
        if "import" in value:
            return "import"
        if len(value) == 1 and "mcp" in value:
            return "mcp"
        if len(value) == 1:
            (key,) = value
            if key in BUILTIN_NAMES:
                return "toolset"
    elif isinstance(value, BaseModel):  # already-built entries, as in AgentConfig(tools=[...])
        if isinstance(value, ToolsetEntry):
            return "toolset"
        if isinstance(value, MCPEntry):
            return "mcp"
        return "import" if isinstance(value, CustomTool) else "invalid"
    return "invalid"


# The tags are internal: the error mapper drops them from locations (see `_load`).
TOOL_TAGS = ("builtin", "path", "toolset", "import", "mcp", "invalid")


# Types made at run time from the registry: mypy sees them as Any.
_Annotated: Any = Annotated
_Literal: Any = Literal
_Union: Any = typing.Union
_Skip: Any = SkipJsonSchema


def _entries() -> Any:
    """One toolset entry form: the union of every toolset's `- name:` model, by its key."""
    models = [_Annotated[toolset_entry(name), Tag(name)] for name in BUILTIN_NAMES]
    if not models:
        return _Skip[Annotated[Any, BeforeValidator(_reject_entry)]]
    if len(models) == 1:
        return models[0]

    def key(value: Any) -> str:
        if isinstance(value, dict):
            return str(next(iter(value)))
        return value.toolset if isinstance(value, ToolsetEntry) else ""

    return _Annotated[_Union[tuple(models)], Discriminator(key)]


_Builtin: Any = _Literal[BUILTIN_NAMES] if BUILTIN_NAMES else _Skip[None]
_Toolset: Any = _entries()

ToolEntry = Annotated[
    Annotated[_Builtin, Tag("builtin")]
    | Annotated[
        str,
        BeforeValidator(_check_import_path),
        Field(json_schema_extra={"pattern": _IMPORT_PATH.pattern}),
        Tag("path"),
    ]
    | Annotated[_Toolset, Tag("toolset")]
    | Annotated[CustomTool, Tag("import")]
    | Annotated[MCPEntry, Tag("mcp")]
    | SkipJsonSchema[Annotated[Any, BeforeValidator(_reject_entry), Tag("invalid")]],
    Discriminator(_tool_tag),
]
"""One `tools:` entry, as written."""


# --- the whole file ----------------------------------------------------------------------------

_SandboxSpec = section_spec("sandbox")
if TYPE_CHECKING:
    _Sandbox = Any
elif _SandboxSpec is None:  # no toolset owns it: accept nothing but an empty mapping
    _Sandbox = SkipJsonSchema[dict[str, None] | None]
else:
    _mode = _SandboxSpec.model_fields.get("mode")
    _Sandbox = Annotated[
        _SandboxSpec,
        BeforeValidator(
            _shorthand("sandbox"),
            json_schema_input_type=(_mode.annotation if _mode else str) | _SandboxSpec,
        ),
    ]
_SANDBOX_DEFAULT: Any = _SandboxSpec() if _SandboxSpec is not None else None


class AgentConfig(Spec):
    """An agent: its model, prompt, tools and limits. See `config.yaml` for a commented example."""

    model: Annotated[str, Field(min_length=1)]
    """The Ollama model: `llama3.1`, `llama3.1:70b`, `llama3.2:3b`, `llama3.3`, ..."""
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")] | None = None
    """The agent's name as a tool of others (`llama-agent mcp`). Unset: the file's name."""
    description: str | None = None
    """What the agent does, for the clients that call it as a tool (`llama-agent mcp`)."""
    system: str | None = None
    """The system prompt: who the agent is and how it should work. The tools are described to
    the model separately, in Llama's own format."""
    tools: list[ToolEntry] = []
    """Built-ins (`search`, `code`, `math`, each optionally with settings) and tools of your own
    (`package.module:function`, or a mapping with `import:` and per-tool settings), and the
    tools of MCP servers (`mcp:` with a `command` or a `url`)."""
    tool_format: Literal["json", "function_tag", "python_list"] | None = None
    """How tools are described to the model and how it calls them. Unset: the model's default
    (`json` for Llama 3.1 and 3.3, `python_list` for 3.2)."""
    tool_choice: Annotated[str, Field(min_length=1)] = "auto"
    """`auto`: the model decides; `required`: it must call a tool; or the name of the one tool
    it must call."""
    engine: Literal["ollama", "vllm", "sglang", "llamacpp"] = "ollama"
    """The model server: `ollama` (raw mode), `vllm`, `sglang` or `llamacpp` (llama.cpp's
    `llama-server`). Each gets the same native prompts. `--engine` overrides it."""
    server: ServerSettings = ServerSettings()
    """The engine's hosts (one, or a pool), its API key's variable, requests per host."""
    ollama: _Ollama = OllamaSettings()
    """The Ollama host (`ollama.host`, or `server.hosts`) and the sampling options, which every
    engine takes (`num_ctx` and `keep_alive` are Ollama's: the other servers fix the context
    when they start)."""
    limits: _Limits = LimitsSettings()
    """When a run stops even though the model has not answered."""
    sandbox: _Sandbox = _SANDBOX_DEFAULT
    """Where the `code` tool runs: `bwrap` (default) or `none`, or a mapping with limits."""
    sessions: Annotated[str, Field(min_length=1)] | None = None
    """The SQLite file that keeps named conversations (`--session NAME`), relative to this
    file's folder. Unset: `$LLAMA_AGENT_HOME/sessions.db`, else the user data folder."""

    # Set by the loader: where each value was written, and where custom tools are imported from.
    _source: SourceMap = PrivateAttr(default_factory=SourceMap)
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> SourceMap:
        """Where each value was written (empty for a config built in code)."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The config file's folder: custom tools are imported from there first."""
        return self._base_dir
