"""Meta's system-prompt and tool-definition texts, filled in exactly as Meta's Jinja does.

The texts are data in `templates/` (`string.Template` files). Plain templates instead of Jinja:
the loops are three joins, nothing else of Jinja is needed, rendering is faster, and no user
text is ever evaluated as a template (Meta renders a "replace" system prompt as Jinja; here only
the `{{ function_description }}` placeholder is filled in). The Jinja quirks that matter for
byte-identical output are reproduced on purpose and named where they happen.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from string import Template
from typing import Any

from agent.errors import RenderError
from agent.llama3._memo import IdentityCache
from agent.llama3._neutralize import neutralize
from agent.llama3._types import ToolSpec

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_PLACEHOLDER = re.compile(r"\{\{\s*function_description\s*\}\}")


@cache
def _template(name: str) -> Template:
    text = resources.files("agent.llama3").joinpath("templates", name).read_text("utf-8")
    # Jinja's keep_trailing_newline=False drops one final newline; the files end with one.
    return Template(text.removesuffix("\n"))


def fill(template: str, /, **values: str) -> str:
    """Fill the template file `template` (e.g. `"system_default.txt"`)."""
    return _template(template).substitute(values)


def format_date(day: dt.date) -> str:
    """`strftime("%d %B %Y")` in English whatever the locale: `05 January 2025`."""
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"


@lru_cache(maxsize=16)
def system_default(today: dt.date) -> str:
    """The two date lines Meta puts in every Llama 3.1 system prompt."""
    return fill("system_default.txt", today=format_date(today))


@lru_cache(maxsize=32)
def builtin_block(builtins: tuple[str, ...]) -> str:
    """`Environment: ipython`, then a `Tools:` line naming the built-ins but code_interpreter."""
    listed = [name for name in builtins if name != "code_interpreter"]
    text = fill("environment.txt") + "\n"
    if listed:
        text += fill("builtin_tools.txt", names=", ".join(listed).strip())
    return text


@lru_cache(maxsize=64)
def tool_choice_text(choice: str) -> str:
    """The instruction Meta appends for `tool_choice` (empty for auto and none)."""
    if choice in ("auto", "none"):
        return ""
    if choice == "required":
        return fill("tool_choice_required.txt")
    return fill("tool_choice_tool.txt", name=choice)


def _tojson(value: Any) -> str:
    # Jinja's `tojson`: sorted keys, then HTML-safe escapes.
    return (
        json.dumps(value, sort_keys=True)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )


def _text(value: Any) -> str:
    # Jinja prints None as "None" and pastes everything else with str(), unescaped.
    return neutralize(str(value))


@dataclass(frozen=True, kw_only=True)
class _Param:
    name: str
    param_type: str
    description: str | None
    required: bool
    default: Any


def _params(spec: ToolSpec) -> list[_Param]:
    """Meta's `ToolParamDefinition`s from a JSON schema: one per property, in order (§1.1)."""
    schema = spec.parameters if isinstance(spec.parameters, Mapping) else {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or ()
    if not isinstance(properties, Mapping):
        raise RenderError(
            f"tool '{spec.name}': 'properties' in its parameters schema must be an object, "
            f"not {type(properties).__name__}"
        )
    params = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, Mapping) else {}
        params.append(
            _Param(
                name=str(name),
                param_type=_param_type(prop),
                description=prop.get("description"),
                required=name in required,
                default=prop.get("default"),
            )
        )
    return params


def _param_type(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list | tuple) and kind:
        return " | ".join(str(k) for k in kind)
    if "properties" in prop:
        return "object"
    if "items" in prop:
        return "array"
    return "any"


# --- the tool blocks, cached per set of tools ------------------------------------------------
#
# A run renders the same tools at every step, and rendering their block is most of the cost of
# a prompt. The blocks are cached by the specs' content (their repr, computed once per spec
# object): equal specs built anew (from dicts, say) share a block. A spec's `parameters` must
# therefore not be changed in place once it has been rendered (ToolSpec is frozen; its dicts
# are meant to be too).

_SPEC_KEYS: IdentityCache[object] = IdentityCache()


def _spec_key(spec: ToolSpec) -> object:
    key = _SPEC_KEYS.get(spec)
    if key is None:
        try:
            key = repr(spec)
        except Exception:  # a value in the schema with a broken repr: the spec is its own key
            key = object()
        _SPEC_KEYS.put(spec, key)
    return key


class Toolset:
    """Tool specs, equal to another `Toolset` when the specs have the same content."""

    __slots__ = ("_hash", "key", "specs")

    def __init__(self, specs: tuple[ToolSpec, ...]) -> None:
        self.specs = specs
        self.key = tuple(_spec_key(s) for s in specs)
        self._hash = hash(self.key)

    @classmethod
    def of(cls, specs: Sequence[ToolSpec]) -> Toolset:
        """The toolset of `specs`, in order."""
        return cls(tuple(specs))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Toolset) and self.key == other.key


def json_tools(tools: Sequence[ToolSpec]) -> str:
    """Meta's JSON custom-tool block (JsonCustomToolGenerator), sent as a user message."""
    return _json_tools(Toolset.of(tools))


@lru_cache(maxsize=32)
def _json_tools(tools: Toolset) -> str:
    blocks = []
    for spec in tools.specs:
        params = _params(spec)
        properties = ",".join(
            "\n" + fill("json_param.txt", name=_text(p.name), description=_text(p.description))
            for p in params
        )
        blocks.append(
            fill(
                "json_function.txt",
                name=_text(spec.name),
                description=_text(spec.description),
                properties=properties,
                required=_tojson([p.name for p in params if p.required]),
            )
            + "\n"
        )
    return fill("json_tools.txt", functions="".join(blocks))


def function_tag_tools(tools: Sequence[ToolSpec]) -> str:
    """Meta's `<function=...>` custom-tool block (FunctionTagCustomToolGenerator)."""
    return _function_tag_tools(Toolset.of(tools))


@lru_cache(maxsize=32)
def _function_tag_tools(tools: Toolset) -> str:
    blocks = []
    for spec in tools.specs:
        # model_dump() of each parameter without its default, through `tojson` (sorted keys).
        dumped = {
            p.name: {
                "description": None if p.description is None else neutralize(str(p.description)),
                "param_type": p.param_type,
                "required": p.required,
            }
            for p in _params(spec)
        }
        blocks.append(
            fill(
                "function_tag_function.txt",
                name=_text(spec.name),
                description=_text(spec.description),
                parameters=_tojson(dumped),
            )
            + "\n\n"
        )
    return fill("function_tag_tools.txt", functions="".join(blocks))


def python_list_functions(tools: Sequence[ToolSpec]) -> str:
    """The function list of Meta's Llama 3.2/3.3 prompt (PythonListCustomToolGenerator)."""
    return _python_list_functions(Toolset.of(tools))


@lru_cache(maxsize=32)
def _python_list_functions(tools: Toolset) -> str:
    blocks = []
    for spec in tools.specs:
        params = _params(spec)
        properties = ",".join(
            "\n"
            + fill(
                "python_list_param.txt",
                name=_text(p.name),
                type=_text(p.param_type),
                description=_text(p.description),
                # Jinja's `{% if param.default %}`: falsy defaults (0, False, "") vanish.
                default=fill("python_list_default.txt", value=_text(p.default))
                if p.default
                else "",
            )
            for p in params
        )
        blocks.append(
            fill(
                "python_list_function.txt",
                name=_text(spec.name),
                description=_text(spec.description),
                required=_tojson([p.name for p in params if p.required]),
                properties=properties,
            )
        )
    return fill("python_list_functions.txt", functions=",\n    ".join(blocks))


def python_list_system(function_description: str, replacement: str | None) -> str:
    """Meta's default 3.2/3.3 preamble, or the caller's system prompt with the list filled in."""
    if replacement is None:
        return fill("python_list_system.txt", function_description=function_description)
    if not _PLACEHOLDER.search(replacement):
        raise RenderError(
            "system_message_behavior='replace' needs '{{ function_description }}' in the system "
            "message, where the tool list goes; add it, or use system_message_behavior='append'"
        )
    filled = _PLACEHOLDER.sub(lambda _: function_description, replacement)
    return filled.removesuffix("\n")
