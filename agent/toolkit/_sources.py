"""Tool sources: tools an agent learns only once it is open (an MCP server's), merged with the
tools it was given into one `Toolbox` per run.

A source starts with the agent (`open`), lists its current tools (`tools`, which may reconnect
or refresh a changed listing) and stops with it (`aclose`). `LiveToolbox` asks every source at
the start of each run, so a run keeps the tools it started with while the next one sees the
change, and rebuilds the `Toolbox` only when a listing changed. Two tools with one name are an
error that names where each came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Protocol, runtime_checkable

from agent.errors import ToolDefinitionError
from agent.toolkit._tool import Tool, Toolbox


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
