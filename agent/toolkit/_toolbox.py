"""`Toolbox`: the tools of one agent, found by name or by the Llama built-in they serve."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from agent.errors import ToolDefinitionError, UnknownToolError
from agent.llama3 import ToolSpec
from agent.toolkit._tool import Tool


class Toolbox:
    """An ordered, immutable set of tools with unique names.

    Plain functions are made tools with `Tool.from_function`. A call to a built-in
    (`brave_search`) reaches the tool declared with `builtin="brave_search"`, whatever its name.
    """

    def __init__(self, tools: Iterable[Tool[..., Any] | Callable[..., Any]] = ()) -> None:
        by_name: dict[str, Tool[..., Any]] = {}
        by_builtin: dict[str, Tool[..., Any]] = {}
        for item in tools:
            current = item if isinstance(item, Tool) else Tool.from_function(item)
            if current.name in by_name:
                raise ToolDefinitionError(
                    f"two tools are named '{current.name}'; tool names must be unique: rename "
                    "one with name=..."
                )
            if current.builtin is not None:
                if current.builtin in by_builtin:
                    raise ToolDefinitionError(
                        f"tools '{by_builtin[current.builtin].name}' and '{current.name}' both "
                        f"serve the built-in '{current.builtin}'; keep one"
                    )
                by_builtin[current.builtin] = current
            by_name[current.name] = current
        # No tool can be named after a built-in it does not serve (Tool refuses it), so a
        # name and a built-in never point at two different tools.
        self._tools = tuple(by_name.values())
        self._by_name = by_name
        self._by_builtin = by_builtin
        self._specs = tuple(t.spec for t in self._tools)

    def resolve(self, name: str) -> Tool[..., Any]:
        """The tool a call named `name` goes to: by tool name, else by the built-in it serves.
        Raises `UnknownToolError` listing the names the model can call."""
        found = self._by_name.get(name) or self._by_builtin.get(name)
        if found is None:
            raise UnknownToolError(name, self.callable_names)
        return found

    @property
    def tools(self) -> tuple[Tool[..., Any], ...]:
        """The tools, in order."""
        return self._tools

    @property
    def names(self) -> tuple[str, ...]:
        """The tools' names, in order."""
        return tuple(self._by_name)

    @property
    def callable_names(self) -> tuple[str, ...]:
        """The names the model calls them by: the built-in's name for tools serving one."""
        return tuple(t.builtin or t.name for t in self._tools)

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """What the renderer shows the model, in order."""
        return self._specs

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool[..., Any]]:
        return iter(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._by_builtin

    def __repr__(self) -> str:
        return f"Toolbox({list(self._by_name)!r})"
