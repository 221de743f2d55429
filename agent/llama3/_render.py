"""Render a conversation as Meta's Llama 3.x prompt text, byte for byte (FORMAT.md §3-4).

Assistant turns received from the model carry `raw`, the completion exactly as streamed, and are
re-emitted verbatim (DESIGN decision 4). Ollama strips the stop token from what it streams, so
`raw` usually has none; the renderer then appends `<|eom_id|>` or `<|eot_id|>` after it, from
`stop_reason`. The loop stores the completion as streamed, so each new prompt begins with the
previous prompt plus that completion, byte for byte: the only new text is the end token and
what follows it. A `raw` that already ends with `<|eot_id|>` or `<|eom_id|>` (a server that keeps
stop tokens) is kept as it is, with no second end token.

Untrusted text is neutralized (DESIGN decision 5): tool results, user and neutral-form assistant
text unless the message is `trusted`, and always what is never meant to hold a special token:
tool names, descriptions and parameter schemas, the tool named by `tool_choice`, and the names and
arguments of calls in assistant messages. System messages come from the program and are kept as
they are; so is `raw`, which is the model's own output.

A run renders the same messages and tools at every step, so the text of each message is kept
per message object while it lives, the head (system prompt and tool block) by what it is made
of, and the tool blocks per set of tools (below).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from string import Template
from typing import Any, Generic, Literal, TypeVar, get_args

from agent.errors import RenderError
from agent.llama3._special import (
    BEGIN_OF_TEXT,
    END_HEADER,
    EOM,
    EOT,
    PYTHON_TAG,
    START_HEADER,
    neutralize,
)
from agent.llama3._types import (
    BUILTIN_NAMES,
    Message,
    ToolCall,
    ToolFormat,
    ToolSpec,
    default_tool_format,
    model_family,
)

# --- remembering per object -------------------------------------------------------------------
#
# Remember what was computed from an object for as long as the object lives.
#
# The renderer sees the same `Message` and `ToolSpec` objects at every step of a run. They are
# frozen, but hold dicts, so they cannot be hashed: `IdentityCache` keys on the object itself
# (its `id`, checked against a weak reference, so a recycled id never returns a stale value) and
# forgets an entry when its object is collected. It keeps no object alive, so it needs no bound.

V = TypeVar("V")


class _Ref(weakref.ref):  # type: ignore[type-arg]  # weakref.ref[object] is not subclassable at runtime
    __slots__ = ("key",)
    key: int


class IdentityCache(Generic[V]):
    """A value per live object, looked up by identity (equal objects do not share it)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[_Ref, V]] = {}
        self._callback = self._forget  # one bound method for all the weak references

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, obj: object) -> V | None:
        """The value stored for this very object, or None."""
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None

    def put(self, obj: object, value: V) -> None:
        """Store `value` for `obj` until `obj` is collected (objects without weak references
        are not stored)."""
        try:
            ref = _Ref(obj, self._callback)
        except TypeError:
            return
        ref.key = id(obj)
        self._entries[ref.key] = (ref, value)

    def _forget(self, ref: _Ref) -> None:
        # Called as the object dies; the id may already hold a newer object's entry.
        entry = self._entries.get(ref.key)
        if entry is not None and entry[0] is ref:
            self._entries.pop(ref.key, None)


# --- render_prompt ----------------------------------------------------------------------------

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_FORMATS = frozenset(get_args(ToolFormat))


def render_prompt(
    messages: Iterable[Message | Mapping[str, Any]],
    tools: Iterable[ToolSpec | Mapping[str, Any] | Any] = (),
    *,
    model: str = "llama3.1",
    today: dt.date | None = None,
    tool_format: ToolFormat | None = None,
    tool_choice: str = "auto",
    system_message_behavior: Literal["append", "replace"] = "append",
    add_system_prompt: bool = True,
) -> str:
    """Meta's full prompt for `messages`, from `<|begin_of_text|>` to the open assistant header.

    - `messages`: `Message` objects or neutral dicts (FORMAT.md §1.1), mixed as you like.
    - `tools`: `ToolSpec`, neutral dicts, or objects with a `.spec` `ToolSpec` (the `Tool` class).
      A spec with `builtin=` is listed the native way (`Tools: brave_search`) whatever its name.
    - `model`: an Ollama name; picks the 3.1 assembly or the 3.2/3.3 one (`model_family`).
    - `today`: the date in the 3.1 system prompt (default: today). Pin it for a whole run: a
      date that changes mid-run changes the prompt's start and defeats the server's cache.
    - `tool_format`: `"json"`, `"function_tag"` (3.1) or `"python_list"` (3.2/3.3); None picks the
      model's default. Like Meta, custom tools in a format the model family does not take are
      refused with `RenderError`.
    - `tool_choice`: `"auto"`, `"required"`, `"none"` (tools are left out, as llama-stack does)
      or the name of one tool.
    - `system_message_behavior`: 3.2/3.3 only; `"replace"` puts the tool list where the system
      message says `{{ function_description }}` instead of using Meta's preamble.
    - `add_system_prompt=False`: the messages exactly as given, no system prompt or tool block.
    """
    msgs: list[Message] = []
    known: list[tuple[str, ...] | None] = []  # each message's remembered text, if any
    for message in messages:
        remembered = _PARTS.get(message)  # then a Message, read at an earlier step
        if remembered is None or not isinstance(message, Message):
            message = _coerce_message(message)
        msgs.append(message)
        known.append(remembered)
    specs, toolset = _toolset(tools)
    fmt = tool_format or default_tool_format(model)
    if fmt not in _FORMATS:
        raise RenderError(f"unknown tool_format {fmt!r}; use one of {sorted(_FORMATS)}")
    if system_message_behavior not in ("append", "replace"):
        raise RenderError(
            f"unknown system_message_behavior {system_message_behavior!r}; "
            "use 'append' or 'replace'"
        )
    choice = _tool_choice(tool_choice, specs)
    parts = [BEGIN_OF_TEXT]
    start = 0
    if add_system_prompt:
        system = _split_system(msgs)
        start = 0 if system is None else 1
        parts.append(
            _head(
                toolset,
                offered=tool_choice != "none",
                system=None if system is None else system.content,
                family=model_family(model),
                fmt=fmt,
                today=today or dt.date.today(),
                choice=choice,
                behavior=system_message_behavior,
            )
        )
    for i in range(start, len(msgs)):
        parts.extend(known[i] or _message_parts(msgs[i], fmt, _custom_names(toolset)))
    parts.append(_HEADERS["assistant"])
    return "".join(parts)


@lru_cache(maxsize=64)
def _head(
    toolset: Toolset,
    *,
    offered: bool,
    system: str | None,
    family: str,
    fmt: str,
    today: dt.date,
    choice: str,
    behavior: str,
) -> str:
    """The text of the messages Meta puts first (the system prompt, the tool block).

    A run renders the same head at every step: it is kept by what it is made of (the tools by
    content, like the tool blocks below).
    """
    specs = list(toolset.specs) if offered else []
    if family == "3.1":
        head = _augment_3_1(system, specs, fmt=fmt, today=today, choice=choice)
    else:
        head = _augment_3_2(system, specs, fmt=fmt, choice=choice, behavior=behavior)
    return "".join(part for msg in head for part in _encode_message(msg, fmt, frozenset()))


# The tools of the latest render, as given: a run passes the same tuple at every step.
_last_tools: tuple[tuple[Any, ...], list[ToolSpec], Toolset] | None = None


def _toolset(tools: Iterable[ToolSpec | Mapping[str, Any] | Any]) -> tuple[list[ToolSpec], Toolset]:
    """The specs of `tools` and their `Toolset`. Those of the last tuple of `ToolSpec`s are
    kept: neither the tuple nor the frozen specs in it change (a spec's key is already taken
    once per object, `_spec_key`), unlike dicts, which may be edited between two renders."""
    global _last_tools
    last = _last_tools
    if last is not None and last[0] is tools:
        return last[1], last[2]
    specs = [_coerce_tool(t) for t in tools]
    toolset = Toolset.of(specs)
    if type(tools) is tuple and all(type(t) is ToolSpec for t in tools):
        _last_tools = (tools, specs, toolset)
    return specs, toolset


@lru_cache(maxsize=64)
def _custom_names(toolset: Toolset) -> frozenset[str]:
    return frozenset(s.name for s in toolset.specs if s.builtin is None)


# --- inputs -------------------------------------------------------------------------------


def _coerce_message(message: Message | Mapping[str, Any]) -> Message:
    if isinstance(message, Message):
        msg = message
    elif isinstance(message, Mapping):
        data = dict(message)
        if data.get("role") == "ipython":
            data["role"] = "tool"
        if data.get("role") not in _ROLES:
            raise RenderError(
                f"message role {data.get('role')!r} is not one of {sorted(_ROLES)} (or 'ipython')"
            )
        try:
            msg = Message.from_dict(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise RenderError(f"cannot read message {message!r}: {exc}") from exc
    else:
        raise RenderError(
            f"a message must be an agent.llama3.Message or a dict, not {type(message).__name__}"
        )
    if msg.role not in _ROLES:
        raise RenderError(f"message role {msg.role!r} is not one of {sorted(_ROLES)}")
    if not isinstance(msg.content, str) or (msg.raw is not None and not isinstance(msg.raw, str)):
        raise RenderError(f"message content must be text; got {type(msg.content).__name__}")
    return msg


def _coerce_tool(tool: ToolSpec | Mapping[str, Any] | Any) -> ToolSpec:
    attached = getattr(tool, "spec", None)
    if isinstance(tool, ToolSpec):
        spec = tool
    elif isinstance(attached, ToolSpec):
        spec = attached
    elif isinstance(tool, Mapping):
        data: Mapping[str, Any] = tool
        if isinstance(data.get("function"), Mapping):  # OpenAI's {"type": "function", ...}
            data = data["function"]
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise RenderError(f"a tool needs a 'name': {tool!r}")
        spec = ToolSpec.from_dict(data)
    else:
        raise RenderError(
            "a tool must be a ToolSpec, a dict or an object with a .spec ToolSpec, "
            f"not {type(tool).__name__}"
        )
    if spec.builtin is not None and spec.builtin not in BUILTIN_NAMES:
        raise RenderError(
            f"tool '{spec.name}': unknown built-in {spec.builtin!r}; "
            f"the built-ins are {sorted(BUILTIN_NAMES)}"
        )
    return spec


def _tool_choice(choice: str, specs: Sequence[ToolSpec]) -> str:
    if choice in ("auto", "required", "none"):
        return tool_choice_text(choice)
    for spec in specs:
        if choice in (spec.name, spec.builtin):
            return tool_choice_text(spec.builtin or spec.name)
    names = sorted({s.builtin or s.name for s in specs})
    raise RenderError(
        f"tool_choice {choice!r} is not 'auto', 'required', 'none' or one of the tools: {names}"
    )


# --- Meta's system-prompt assembly (llama-stack prompt_adapter) ------------------------------


def _split_system(msgs: list[Message]) -> Message | None:
    """The system message the conversation starts with, if any (Meta's format has one)."""
    system = msgs[0] if msgs and msgs[0].role == "system" else None
    if system is not None and len(msgs) > 1 and msgs[1].role == "system":
        raise RenderError(
            "two system messages in a row at the start: Meta's format has one; merge them"
        )
    return system


def _augment_3_1(
    system: str | None, specs: list[ToolSpec], *, fmt: str, today: dt.date, choice: str
) -> list[Message]:
    """The messages Meta puts first: the system prompt, the tool block."""
    custom = [s for s in specs if s.builtin is None]
    content = ""
    if specs:
        content += builtin_block(_builtins(specs)) + "\n"
    content += system_default(today)
    if system is not None:
        content += "\n" + system
    if choice:
        content += "\n" + choice
    out = [Message(role="system", content=content, trusted=True)]
    if custom:
        if fmt == "json":
            block = json_tools(custom)
        elif fmt == "function_tag":
            block = function_tag_tools(custom)
        else:
            raise RenderError(
                f"tool_format {fmt!r} does not work with Llama 3.1 custom tools (Meta refuses "
                "it too); use 'json' or 'function_tag', or a llama3.2 / llama3.3 model"
            )
        out.append(Message(role="user", content=block, trusted=True))
    return out


def _augment_3_2(
    system: str | None, specs: list[ToolSpec], *, fmt: str, choice: str, behavior: str
) -> list[Message]:
    custom = [s for s in specs if s.builtin is None]
    builtins = _builtins(specs)
    content = ""
    if builtins:
        content += builtin_block(builtins) + "\n"
    if custom:
        if fmt != "python_list":
            raise RenderError(
                f"tool_format {fmt!r} does not work with Llama 3.2 / 3.3 custom tools (Meta "
                "refuses it too); use 'python_list', or a llama3.1 model"
            )
        replacement = system if system is not None and behavior == "replace" else None
        content += python_list_system(python_list_functions(custom), replacement) + "\n"
    if system is not None and (behavior == "append" or not custom):
        content += system
    if choice:
        content += "\n" + choice
    return [Message(role="system", content=content.strip("\n"), trusted=True)]


def _builtins(specs: Sequence[ToolSpec]) -> tuple[str, ...]:
    names: list[str] = []
    for spec in specs:
        if spec.builtin is not None and spec.builtin not in names:
            names.append(spec.builtin)
    return tuple(names)


# --- ChatFormat.encode_message ---------------------------------------------------------------


def _header(role: str) -> str:
    return f"{START_HEADER}{role}{END_HEADER}\n\n"


_HEADERS = {role: _header(role) for role in ("system", "user", "assistant")}
_HEADERS["tool"] = _header("ipython")  # Meta's name for the tool role

# A message's text depends on the message alone, except an assistant turn rebuilt from its
# calls (no `raw`): that one also depends on the format and the tools, and on argument dicts
# that may change, so it is not cached. The cache holds the pieces, not their concatenation:
# a message's text is not copied, and what is stored per message stays small.
_PARTS: IdentityCache[tuple[str, ...]] = IdentityCache()


def _message_parts(msg: Message, fmt: str, custom_names: frozenset[str]) -> tuple[str, ...]:
    """`_encode_message`, remembered per message object (a run renders each one every step)."""
    parts = _PARTS.get(msg)
    if parts is None:
        parts = _encode_message(msg, fmt, custom_names)
        if msg.raw is not None or not msg.tool_calls:
            _PARTS.put(msg, parts)
    return parts


def _encode_message(msg: Message, fmt: str, custom_names: frozenset[str]) -> tuple[str, ...]:
    header = _HEADERS[msg.role]
    end = EOM if msg.role == "assistant" and msg.stop_reason == "end_of_message" else EOT
    if msg.role == "assistant" and msg.raw is not None:
        if msg.raw.endswith((EOT, EOM)):
            return header, msg.raw
        return header, msg.raw, end
    guard = _same if msg.role == "system" or msg.trusted else neutralize
    body = guard(msg.content)
    if msg.role == "assistant" and msg.tool_calls:
        calls = "".join(_encode_call(c, fmt, custom_names) for c in msg.tool_calls)
        first_is_code = _is_builtin(msg.tool_calls[0].name, custom_names) and (
            msg.tool_calls[0].name == "code_interpreter"
        )
        # Calls are arguments and names, never special tokens, even in a trusted message.
        return header, (PYTHON_TAG if first_is_code else ""), body, neutralize(calls), end
    return header, body, end


def _same(text: str) -> str:
    return text


def _is_builtin(name: str, custom_names: frozenset[str]) -> bool:
    return name in BUILTIN_NAMES and name not in custom_names


def _encode_call(call: ToolCall, fmt: str, custom_names: frozenset[str]) -> str:
    """Meta's `ToolUtils.encode_tool_call`, quirks included (FORMAT.md §3.1)."""
    args = call.arguments
    if _is_builtin(call.name, custom_names):
        if call.name == "code_interpreter":
            return str(args.get("code", next(iter(args.values()), "")))
        query = args.get("query", next(iter(args.values()), ""))
        return f'{call.name}.call(query="{query}")'  # not escaped, as Meta writes it
    if fmt == "python_list":
        inner = ", ".join(f"{k}={_python_value(v)}" for k, v in args.items())
        return f"[{call.name}({inner})]"
    try:
        if fmt == "function_tag":
            return f"<function={call.name}>{json.dumps(args, default=_jsonable)}</function>"
        payload = {"type": "function", "name": call.name, "parameters": args}
        return json.dumps(payload, default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"tool call '{call.name}': arguments are not JSON: {exc}") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _python_value(value: Any) -> str:
    # Meta's format_value: strings unescaped in double quotes, dicts as {k=v} (sic).
    if isinstance(value, str):
        return f'"{value}"'
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_python_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_python_value(v)}" for k, v in value.items()) + "}"
    raise RenderError(f"cannot write a {type(value).__name__} argument in the python-list format")


# --- Meta's templates -------------------------------------------------------------------------
#
# Meta's system-prompt and tool-definition texts, filled in exactly as Meta's Jinja does.
#
# The texts are data in `templates/` (`string.Template` files). Plain templates instead of Jinja:
# the loops are three joins, nothing else of Jinja is needed, rendering is faster, and no user
# text is ever evaluated as a template (Meta renders a "replace" system prompt as Jinja; here only
# the `{{ function_description }}` placeholder is filled in). The Jinja quirks that matter for
# byte-identical output are reproduced on purpose and named where they happen.

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
    return fill("tool_choice_tool.txt", name=_text(choice))  # a tool name, written as in its block


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
