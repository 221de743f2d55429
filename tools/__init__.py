"""Built-in tools, written with the same public `@tool` API users have.

Each toolset serves one of Llama 3.1's trained built-ins and the same tool under an ordinary
custom name:

| toolset | built-in           | custom tool                  | module         |
|---------|--------------------|------------------------------|----------------|
| search  | `brave_search`     | `web_search(query, max_results?)` | `tools.search` |
| code    | `code_interpreter` | `run_python(code)`           | `tools.code`   |
| math    | `wolfram_alpha`    | `calculate(expression)`      | `tools.math`   |

`names=` picks `"native"` (the trained name), `"custom"` or `"both"` (the default in Python). A
config names them (`tools: [search, code, math]`) and, unless a toolset's `names:` says otherwise,
offers only the names the model was trained on: the native ones for Llama 3.1 and 3.3; for 3.2,
`code_interpreter` but `web_search` and `calculate` (its prompt guide documents the code
interpreter only). Two tools that do the same thing confuse a small model.
`BUILTIN_TOOLSETS[name](**options)` builds each one's tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent import Tool
from tools.code import Sandbox, SandboxLimits, code_tools
from tools.math import math_tools
from tools.search import search_tools

__all__ = [
    "BUILTIN_TOOLSETS",
    "Sandbox",
    "SandboxLimits",
    "code_tools",
    "math_tools",
    "search_tools",
]

BUILTIN_TOOLSETS: dict[str, Callable[..., list[Tool[..., Any]]]] = {
    "search": search_tools,
    "code": code_tools,
    "math": math_tools,
}
