"""Built-in tools, written with the same public `@tool` API users have.

Installed as `llama_agent_tools` (the folder is `tools/` in the repository), so a user's own
`tools.py` never collides with it. Each toolset serves one of Llama 3.1's trained built-ins and
the same tool under an ordinary custom name:

| toolset | built-in           | custom tool                       | module                     |
|---------|--------------------|-----------------------------------|----------------------------|
| search  | `brave_search`     | `web_search(query, max_results?)` | `llama_agent_tools.search` |
| code    | `code_interpreter` | `run_python(code)`                | `llama_agent_tools.code`   |
| math    | `wolfram_alpha`    | `calculate(expression)`           | `llama_agent_tools.math`   |

`names=` picks `"native"` (the trained name), `"custom"` or `"both"` (the default in Python). A
config names them (`tools: [search, code, math]`) and, unless a toolset's `names:` says otherwise,
offers only the names the model was trained on: the native ones for Llama 3.1 and 3.3; for 3.2,
`code_interpreter` but `web_search` and `calculate` (its prompt guide documents the code
interpreter only). Two tools that do the same thing confuse a small model.

A config finds them as any other package's toolsets: through the `llama_agent.tools` entry
points (`SEARCH`, `CODE`, `MATH` below; see `agent.toolkit.Toolset`).
"""

from __future__ import annotations

from typing import Any

from agent.toolkit import Toolset

from .code import (
    CodeSettings,
    Sandbox,
    SandboxLimits,
    SandboxSettings,
    check_sandbox,
    code_tools,
    code_toolset,
)
from .math import MathSettings, math_tools, math_toolset
from .search import SearchOptions, SearchSettings, search_tools, search_toolset

__all__ = [
    "BUILTIN_TOOLSETS",
    "CODE",
    "MATH",
    "SEARCH",
    "CodeSettings",
    "MathSettings",
    "Sandbox",
    "SandboxLimits",
    "SandboxSettings",
    "SearchOptions",
    "SearchSettings",
    "code_tools",
    "math_tools",
    "search_tools",
]

SEARCH: Toolset[SearchSettings] = Toolset(
    name="search",
    description="Web search: brave_search (trained) and web_search, through ddgs",
    settings=SearchSettings,
    build=search_toolset,
)
CODE: Toolset[CodeSettings] = Toolset(
    name="code",
    description="Python in a sandbox: code_interpreter (trained) and run_python",
    settings=CodeSettings,
    build=code_toolset,
    section="sandbox",
    section_settings=SandboxSettings,
    section_shorthand="mode",
    check=check_sandbox,
)
MATH: Toolset[MathSettings] = Toolset(
    name="math",
    description="Exact arithmetic: wolfram_alpha (trained) and calculate",
    settings=MathSettings,
    build=math_toolset,
)

BUILTIN_TOOLSETS: dict[str, Any] = {"search": search_tools, "code": code_tools, "math": math_tools}
"""`BUILTIN_TOOLSETS[name](**options)` builds a toolset's tools from Python keyword arguments."""
