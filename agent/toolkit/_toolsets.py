"""Where tools come from besides functions: toolsets and tool sources.

Toolsets are named groups of tools a config lists by name (`tools: [search, code, math]`).

A package ships one by declaring a `Toolset` under the entry-point group `llama_agent.tools`;
the built-ins are registered that way too, so nothing in `agent` imports them:

```toml
[project.entry-points."llama_agent.tools"]
weather = "my_package.weather:toolset"
```

A toolset's settings are a frozen dataclass whose fields all have defaults: the same type is
the Python API's and the YAML spec's (the config validates it strictly, field docstrings become
the JSON Schema's descriptions). Constraints are written once, as `annotated_types` metadata on
the field (`Annotated[float, Gt(0)]`): the config reports them at `file:line`, and
`check_settings` enforces them for Python callers from `__post_init__`.

Tool sources (`ToolSource`: an MCP server, for one) know their tools only once they are open;
`LiveToolbox` gives each run the toolbox of the moment, rebuilt only when a listing changes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    get_args,
    get_origin,
    runtime_checkable,
)

import annotated_types
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from agent.errors import DeveloperError, ToolDefinitionError
from agent.toolkit._tool import Tool, Toolbox

if typing.TYPE_CHECKING:
    from agent.toolkit._tool import Tool

__all__ = [
    "ENTRY_POINT_GROUP",
    "Size",
    "Toolset",
    "ToolsetCheck",
    "ToolsetContext",
    "check_settings",
    "find_toolsets",
]

ENTRY_POINT_GROUP = "llama_agent.tools"

S = TypeVar("S")


@dataclass(frozen=True, kw_only=True)
class ToolsetContext:
    """What the config knows that a toolset's `build` may need."""

    model: str
    """The model the tools are built for."""
    family: str
    """Its Llama family (`3.1`, `3.2`, `3.3`, `unknown`): which tool names it was trained on."""
    section: Any = None
    """The validated settings of the top-level section the toolset owns (`Toolset.section`)."""
    resources: list[Any] = field(default_factory=list)
    """What the tools hold that must be closed (`aclose()`) with the agent: append to it."""


@dataclass(frozen=True, kw_only=True)
class ToolsetCheck:
    """One line of `llama-agent check`: what was looked at, the verdict and the detail."""

    what: str
    verdict: Literal["ok", "warn", "fail"]
    detail: str


@dataclass(frozen=True, kw_only=True)
class Toolset(Generic[S]):
    """A named group of tools and how to build them from settings."""

    name: str
    """The name a config lists (`tools: [name]` or `- name: {settings}`)."""
    description: str
    """One line, for listings."""
    settings: type[S]
    """A dataclass whose fields all have defaults: the settings under `- name:` in a config."""
    build: Callable[[S, ToolsetContext], Sequence[Tool[..., Any]]]
    """The tools, from validated settings."""
    section: str | None = None
    """A top-level config key the toolset owns (the code tools' `sandbox:`), if any."""
    section_settings: type[Any] | None = None
    """The dataclass that section is validated into."""
    section_shorthand: str | None = None
    """The field a plain string written as the section sets (`sandbox: none` is its `mode`)."""
    check: Callable[[Any], ToolsetCheck] | None = None
    """For `llama-agent check`, given the section's settings: does what the tools need work?"""


def find_toolsets() -> Mapping[str, Toolset[Any]]:
    """Every toolset registered under `llama_agent.tools`, by name (loaded once, then cached).

    Raises `DeveloperError` when an entry point does not load or is not a `Toolset` named as
    its entry point.
    """
    return _load(tuple(entry_points(group=ENTRY_POINT_GROUP)))


@functools.cache
def _load(found: tuple[Any, ...]) -> Mapping[str, Toolset[Any]]:
    toolsets: dict[str, Toolset[Any]] = {}
    for point in found:
        if point.name in toolsets:
            continue  # the first one on the path wins, as for an import
        try:
            value = point.load()
        except Exception as exc:
            raise DeveloperError(
                f"the toolset '{point.name}' ({point.value}) does not load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(value, Toolset) or value.name != point.name:
            raise DeveloperError(
                f"the entry point '{point.name}' of {ENTRY_POINT_GROUP} ({point.value}) must be "
                f"a Toolset named '{point.name}', got {value!r}"
            )
        toolsets[point.name] = value
    return toolsets


# --- settings ----------------------------------------------------------------------------------


_SIZE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)")
# KiB, MiB, GiB (and K, M, G) are binary; KB, MB, GB decimal.
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20}
_UNITS |= {"mib": 1 << 20, "mb": 10**6, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9}


def _size(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None or match.group("unit").lower() not in _UNITS:
        raise PydanticCustomError(
            "size",
            "'{value}' is not a size; write bytes (1048576) or a size such as 64KiB, 512MiB, 1GiB",
            {"value": value},
        )
    return int(float(match.group("n")) * _UNITS[match.group("unit").lower()])


Size = Annotated[
    int, annotated_types.Gt(0), BeforeValidator(_size, json_schema_input_type=int | str)
]
"""A positive number of bytes; a config may write it as `512MiB`, `64KiB`, `1GiB`, `10MB`."""


def check_settings(settings: object) -> None:
    """Enforce a settings dataclass's declared constraints (bounds, `Literal` choices).

    Call it from `__post_init__`: the config validates the same declarations itself.

    Raises:
        DeveloperError: the first field whose value breaks its constraint.
    """
    cls = type(settings)
    for name, hint in _hints(cls).items():
        value = getattr(settings, name)
        problem = _problem(hint, value)
        if problem is not None:
            raise DeveloperError(f"{cls.__name__}.{name} {problem}, got {value!r}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls, include_extras=True)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _problem(hint: Any, value: Any) -> str | None:
    if get_origin(hint) is Annotated:
        base, *metadata = get_args(hint)
        if value is not None:
            for bound in metadata:
                problem = _bound(bound, value)
                if problem is not None:
                    return problem
        return _problem(base, value)
    choices = _choices(hint)
    if choices is not None and value not in choices:
        listed = ", ".join("None" if c is None else repr(c) for c in choices)
        return f"must be one of {listed}"
    return None


def _choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal` (or `Literal | None`); None for any other type."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    args = get_args(hint)
    if type(None) in args and len(args) == 2:
        inner = next(a for a in args if a is not type(None))
        if get_origin(inner) is Literal:
            return (*get_args(inner), None)
    return None


def _bound(bound: object, value: Any) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if isinstance(bound, annotated_types.Gt) and not value > bound.gt:  # type: ignore[operator]
        return "must be positive" if bound.gt == 0 else f"must be greater than {bound.gt}"
    if isinstance(bound, annotated_types.Ge) and not value >= bound.ge:  # type: ignore[operator]
        return f"must be at least {bound.ge}"
    if isinstance(bound, annotated_types.Lt) and not value < bound.lt:  # type: ignore[operator]
        return f"must be less than {bound.lt}"
    if isinstance(bound, annotated_types.Le) and not value <= bound.le:  # type: ignore[operator]
        return f"must be at most {bound.le}"
    if isinstance(bound, annotated_types.Interval):
        for part in bound:
            problem = _bound(part, value)
            if problem is not None:
                return problem
    return None


@runtime_checkable
class ToolSource(Protocol):
    """Tools that come from somewhere else, known once the source is open (`MCPTools`).

    `label` names the source in errors (`MCP server 'git'`). `open()` starts it (raising a
    `RunError` that says why when it cannot), `tools()` returns its current tools (reconnecting
    or refreshing as needed), `aclose()` stops it; both `open()` and `aclose()` may be called
    more than once.
    """

    @property
    def label(self) -> str: ...

    async def open(self) -> None: ...

    async def tools(self) -> Sequence[Tool[..., Any]]: ...

    async def aclose(self) -> None: ...


class LiveToolbox:
    """The tools an agent was given plus those of its sources, as one `Toolbox` per run."""

    def __init__(self, tools: Iterable[Tool[..., Any]], sources: Sequence[ToolSource]) -> None:
        self._given = tuple(tools)
        self._sources = tuple(sources)
        self._listings: tuple[Sequence[Tool[..., Any]], ...] | None = None
        self._toolbox = Toolbox(self._given)  # until the sources are open

    @property
    def sources(self) -> tuple[ToolSource, ...]:
        return self._sources

    @property
    def toolbox(self) -> Toolbox:
        """The last toolbox built (the given tools alone until the sources have been opened)."""
        return self._toolbox

    async def open(self) -> Toolbox:
        """Start every source (stopping those started when one fails) and merge their tools."""
        async with AsyncExitStack() as stack:
            for source in self._sources:
                await source.open()
                stack.push_async_callback(source.aclose)
            toolbox = await self.current()
            stack.pop_all()
        return toolbox

    async def current(self) -> Toolbox:
        """The toolbox for a run starting now: rebuilt when a source's listing changed."""
        listings = tuple([await source.tools() for source in self._sources])
        if self._listings is None or any(
            new is not old for new, old in zip(listings, self._listings, strict=True)
        ):
            self._toolbox = merged(self._given, zip(self._sources, listings, strict=True))
            self._listings = listings
        return self._toolbox

    async def aclose(self) -> None:
        """Stop every source, even when one fails (the failure is raised once all are stopped)."""
        async with AsyncExitStack() as stack:
            for source in self._sources:
                stack.push_async_callback(source.aclose)


def merged(
    given: Sequence[Tool[..., Any]],
    listings: Iterable[tuple[ToolSource, Sequence[Tool[..., Any]]]],
) -> Toolbox:
    """One toolbox; a name used twice is an error naming both sources."""
    origin: dict[str, str] = {}
    for item in given:
        origin.setdefault(item.name, f"tool '{item.name}' given to the agent")
    tools = list(given)
    for source, listed in listings:
        for item in listed:
            where = f"tool '{item.name}' of {source.label}"
            if item.name in origin:
                raise ToolDefinitionError(
                    f"{where} has the same name as {origin[item.name]}; tool names must be "
                    "unique: give one of the MCP servers a prefix (prefix: ...), or leave the "
                    "tool out (exclude: [...])"
                )
            origin[item.name] = where
            tools.append(item)
    return Toolbox(tools)


def split_sources(
    items: Iterable[Tool[..., Any] | Callable[..., Any] | ToolSource],
) -> tuple[list[Tool[..., Any] | Callable[..., Any]], list[ToolSource]]:
    """Tools and functions apart from tool sources, each in the order given."""
    tools: list[Tool[..., Any] | Callable[..., Any]] = []
    sources: list[ToolSource] = []
    for item in items:
        if isinstance(item, ToolSource) and not isinstance(item, Tool):
            sources.append(item)
        else:
            tools.append(item)
    return tools, sources
