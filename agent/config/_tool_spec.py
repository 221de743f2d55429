"""The `tools:` entries: built-in names (with settings) and custom tools by import path."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from agent.config._base import Spec, suggest

__all__ = [
    "BUILTIN_NAMES",
    "TOOL_TAGS",
    "CodeEntry",
    "CodeSettings",
    "CustomTool",
    "MathEntry",
    "MathSettings",
    "Names",
    "SearchEntry",
    "SearchSettings",
    "ToolEntry",
]

BUILTIN_NAMES = ("search", "code", "math")

Names = Literal["native", "custom", "both"]
"""Which of a built-in's two tools to offer; see `SearchSettings.names`."""
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class SearchSettings(Spec):
    """The web search tools (`brave_search`, `web_search`), through DuckDuckGo."""

    region: str = "wt-wt"
    """Region code such as `us-en`, `de-de`; `wt-wt` is no region."""
    safesearch: Literal["on", "moderate", "off"] = "moderate"
    """Adult-content filter. Only some engines honour it (`brave`, `google`, `mojeek`,
    `startpage`); `duckduckgo`, the default, ignores it and filters as DuckDuckGo does by
    default. A value other than `moderate` with an engine that ignores it warns."""
    timelimit: Literal["d", "w", "m", "y"] | None = None
    """Only results from the last day, week, month or year."""
    max_results: Annotated[int, Field(ge=1, le=50)] = 5
    """Results per search; also the most the model may ask `web_search` for."""
    backend: str = "duckduckgo"
    """The `ddgs` engine (`duckduckgo`, `brave`, `wikipedia`, `auto`, ...)."""
    timeout: Annotated[float, Field(gt=0)] = 15.0
    """Seconds per search."""
    names: Names | None = None
    """`native`: `brave_search`, the name Llama was trained on (`Tools: brave_search` in the
    system prompt); `custom`: `web_search`, an ordinary tool with a JSON schema; `both`.
    Unset: `native` for Llama 3.1 and 3.3, `custom` for 3.2 (trained for the code interpreter
    but not for search), so that the model does not see two tools that do the same thing."""


class CodeSettings(Spec):
    """The Python tools (`code_interpreter`, `run_python`); the sandbox is set under `sandbox`."""

    pool_size: Annotated[int, Field(ge=0)] = 2
    """Interpreters kept warm (each runs one snippet, then is replaced)."""
    timeout: Annotated[float, Field(gt=0)] | None = None
    """Wall-clock seconds per snippet. Unset: the tool's default."""
    names: Names | None = None
    """`native`: `code_interpreter`, the tool Llama 3.x was trained on (`Environment: ipython`,
    code after `<|python_tag|>`); `custom`: `run_python`, an ordinary tool with a JSON schema;
    `both`. Unset: `native` (every Llama 3.x release documents the code interpreter)."""


class MathSettings(Spec):
    """The math tools (`wolfram_alpha`, `calculate`)."""

    names: Names | None = None
    """`native`: `wolfram_alpha`, the name Llama was trained on (`Tools: wolfram_alpha` in the
    system prompt); `custom`: `calculate`, an ordinary tool with a JSON schema; `both`. Unset:
    `native` for Llama 3.1 and 3.3, `custom` for 3.2."""


class SearchEntry(Spec):
    """`- search:` with settings under it."""

    search: SearchSettings | None


class CodeEntry(Spec):
    """`- code:` with settings under it."""

    code: CodeSettings | None


class MathEntry(Spec):
    """`- math:` with settings under it."""

    math: MathSettings | None


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

    @field_validator("import_")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_import_path(value)


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
        hint = suggest(str(key), [*BUILTIN_NAMES, "import"])
        if hint:
            raise PydanticCustomError(
                "unknown_builtin",
                "unknown tool key '{name}' (did you mean '{hint}'?)",
                {"name": key, "hint": hint},
            )
    raise PydanticCustomError(
        "tool_entry",
        "a tool is a built-in name ({allowed}), an import path package.module:function, "
        "a built-in name as a key with its settings under it, or a mapping with `import:`",
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
        if len(value) == 1:
            (key,) = value
            if key in BUILTIN_NAMES:
                return str(key)
    elif isinstance(value, BaseModel):  # already-built entries, as in AgentConfig(tools=[...])
        return {
            SearchEntry: "search",
            CodeEntry: "code",
            MathEntry: "math",
            CustomTool: "import",
        }.get(type(value), "invalid")
    return "invalid"


# The tags are internal: the error mapper drops them from locations (see `_problems`).
TOOL_TAGS = ("builtin", "path", "search", "code", "math", "import", "invalid")

ToolEntry = Annotated[
    Annotated[Literal["search", "code", "math"], Tag("builtin")]
    | Annotated[
        str,
        BeforeValidator(_check_import_path),
        Field(json_schema_extra={"pattern": _IMPORT_PATH.pattern}),
        Tag("path"),
    ]
    | Annotated[SearchEntry, Tag("search")]
    | Annotated[CodeEntry, Tag("code")]
    | Annotated[MathEntry, Tag("math")]
    | Annotated[CustomTool, Tag("import")]
    | SkipJsonSchema[Annotated[Any, BeforeValidator(_reject_entry), Tag("invalid")]],
    Discriminator(_tool_tag),
]
"""One `tools:` entry, as written."""
