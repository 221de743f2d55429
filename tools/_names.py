"""Which of a toolset's two tools to offer: the trained built-in name, the custom twin, or both."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

from agent.errors import DeveloperError

__all__ = ["Names", "default_names", "pick"]

Names = Literal["native", "custom", "both"]
"""`native`: the tool under Llama's trained built-in name (`brave_search`, `code_interpreter`,
`wolfram_alpha`), listed the native way (`Tools: ...`, `Environment: ipython`); `custom`: the
ordinary tool (`web_search`, `run_python`, `calculate`) with its JSON schema; `both`: the two."""

_T = TypeVar("_T")


def pick(names: Any, native: _T, custom: _T) -> list[_T]:
    """The tools `names` asks for, native first."""
    if names not in get_args(Names):
        raise DeveloperError(f"names must be 'native', 'custom' or 'both', got {names!r}")
    return [t for t, kind in ((native, "native"), (custom, "custom")) if names in (kind, "both")]


def default_names(family: str, *, trained: bool) -> Names:
    """The names a config offers a toolset under when its `names:` is unset.

    Only the trained names for Llama 3.1 and 3.3 (3.3's prompt guide repeats 3.1's built-in
    tool sections). Llama 3.2's guide documents the code interpreter (`trained`) but neither
    `brave_search` nor `wolfram_alpha`, so there search and math get their custom names.
    """
    return "custom" if family == "3.2" and not trained else "native"
