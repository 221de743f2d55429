"""From a typed, documented function to the JSON schema the model sees and the pydantic model
that turns validated JSON into Python values.

`read_function` inspects the function: its parameters and their types (string annotations, as
with `from __future__ import annotations`, resolved by `typing.get_type_hints` against the
function's globals and an explicit `localns`), its docstring, its run-context slot. Everything a
function can get wrong as a tool is refused there, at definition time, with a
`ToolDefinitionError` that names the function and the parameter.

`build_model` and `json_schema_of` make the schema: pydantic's, made easier for a small model to
read: no generated titles, nested models inlined where they are not recursive (`$defs` stay only
for recursive types), `type` and `description` first.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import docstring_parser
import pydantic
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, PydanticJsonSchemaWarning
from pydantic_core import core_schema

from agent.errors import ToolDefinitionError
from agent.toolkit._execute import RunContext

JsonSchema = dict[str, Any]
Converter = Callable[[dict[str, Any]], dict[str, Any]]

# Llama's python_list and built-in syntaxes write calls as `name(...)`: names must be identifiers.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

EMPTY: Any = inspect.Parameter.empty

# docstring_parser's section keys for parameters ("Attributes" sections describe something else).
_PARAM_SECTIONS = frozenset({"param", "other_param", "keyword"})


@dataclass(frozen=True, kw_only=True)
class Param:
    """One parameter the model fills in."""

    name: str
    annotation: Any
    default: Any  # EMPTY when the parameter is required
    positional_only: bool
    description: str | None


@dataclass(frozen=True, kw_only=True)
class FunctionInfo:
    """What a function offers as a tool."""

    label: str  # how errors name the function: its qualified name
    name: str  # the default tool name: the function's __name__
    summary: str
    params: tuple[Param, ...]
    context_param: str | None
    context_optional: bool  # the context parameter has a default: it may be left out
    positional: tuple[str, ...]  # positional-only parameters, in order (context included)
    accepts_any_keyword: bool  # has **kwargs (allowed only for tools built from a schema)
    is_async: bool


def check_name(name: str, *, label: str) -> str:
    """Refuse names the Llama call syntaxes cannot carry."""
    if not _NAME.fullmatch(name):
        raise ToolDefinitionError(
            f"tool {label}: the name {name!r} is not usable; tool names must be identifiers "
            "(letters, digits and '_', not starting with a digit, at most 64 characters): "
            "pass name=... to choose one"
        )
    return name


def is_context_annotation(annotation: Any) -> bool:
    """True for `RunContext`, `RunContext[...]` and `RunContext[...] | None` (a tool that can
    also be called without one, in tests)."""
    origin = get_origin(annotation)
    if annotation is RunContext or origin is RunContext:
        return True
    if origin is Annotated:
        return is_context_annotation(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        return len(members) == 1 and is_context_annotation(members[0])
    return False


def read_function(
    function: Callable[..., Any], *, localns: Mapping[str, Any] | None, strict: bool
) -> FunctionInfo:
    """Inspect `function`. `strict` (tools from functions) requires every parameter annotated and
    refuses `*args`/`**kwargs`; tools from a schema only need to be callable."""
    if not callable(function):
        raise ToolDefinitionError(f"a tool needs a callable, got {type(function).__name__}")
    label = _label(function)
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise ToolDefinitionError(
            f"tool function {label!r} is a generator; a tool returns one value: "
            "collect the items and return a list"
        )
    try:
        signature = _signature(function, label=label, localns=localns)
    except ToolDefinitionError:
        if strict:
            raise
        signature = inspect.signature(function)  # schema tools need no types
    docs = _read_docstring(function, label=label)
    params: list[Param] = []
    positional: list[str] = []
    context_param: str | None = None
    context_optional = False
    accepts_any_keyword = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            if strict:
                raise ToolDefinitionError(
                    f"tool function {label!r}: parameter '**{p.name}' is not allowed; the model "
                    "fills in named parameters from a JSON schema: declare each one with a type"
                )
            accepts_any_keyword = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            raise ToolDefinitionError(
                f"tool function {label!r}: parameter '*{p.name}' is not allowed; tools are called "
                f"with named JSON arguments: use a parameter like '{p.name}: list[...]'"
            )
        if is_context_annotation(p.annotation):
            if context_param is not None:
                raise ToolDefinitionError(
                    f"tool function {label!r}: parameters '{context_param}' and '{p.name}' are "
                    "both RunContext; a tool takes at most one"
                )
            context_param = p.name
            context_optional = p.default is not EMPTY
        elif p.annotation is EMPTY and strict:
            raise ToolDefinitionError(
                f"tool function {label!r}: parameter '{p.name}' has no type annotation; annotate "
                f"it (e.g. '{p.name}: str') so the model is told what to send"
            )
        else:
            params.append(
                Param(
                    name=p.name,
                    annotation=p.annotation,
                    default=p.default,
                    positional_only=p.kind is p.POSITIONAL_ONLY,
                    description=docs.params.get(p.name),
                )
            )
        if p.kind is p.POSITIONAL_ONLY:
            positional.append(p.name)
    unknown = sorted(set(docs.params) - set(signature.parameters))
    if unknown and strict:
        raise ToolDefinitionError(
            f"tool function {label!r}: the docstring documents {_quoted(unknown)}, which "
            "the function does not have; fix the docstring or the signature"
        )
    return FunctionInfo(
        label=label,
        name=getattr(function, "__name__", type(function).__name__),
        summary=docs.summary,
        params=tuple(params),
        context_param=context_param,
        context_optional=context_optional,
        positional=tuple(positional),
        accepts_any_keyword=accepts_any_keyword,
        is_async=is_async_callable(function),
    )


def is_async_callable(function: Callable[..., Any]) -> bool:
    """True for coroutine functions, partials of them and objects with an async `__call__`."""
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(type(function), "__call__", None)  # noqa: B004 - callable instances
    return call is not None and inspect.iscoroutinefunction(call)


def _label(function: Callable[..., Any]) -> str:
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return str(name) if name else repr(function)


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _signature(
    function: Callable[..., Any], *, label: str, localns: Mapping[str, Any] | None
) -> inspect.Signature:
    """The signature with string annotations (`from __future__ import annotations`) resolved by
    `typing.get_type_hints`, against the function's globals and `localns`."""
    try:
        signature = inspect.signature(function)
    except (ValueError, TypeError) as exc:
        raise ToolDefinitionError(f"cannot read the signature of {label!r}: {exc}") from exc
    params = list(signature.parameters.values())
    if not any(isinstance(p.annotation, str) for p in params):
        return signature
    owner = _annotations_owner(function)
    try:
        hints = typing.get_type_hints(owner, localns=localns, include_extras=True)
    except Exception as exc:
        _blame_annotation(owner, params, label=label, localns=localns)
        raise ToolDefinitionError(
            f"tool function {label!r}: its annotations cannot be resolved ({exc})"
        ) from exc
    return signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in params]
    )


def _annotations_owner(function: Callable[..., Any]) -> Any:
    """What holds the annotations of a callable's parameters, as `get_type_hints` reads them:
    the function (or method) itself, a partial's function, a class's `__init__`, or the
    `__call__` of a callable object."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.isclass(function):
        return function.__init__
    if inspect.isroutine(function):
        return function
    return type(function).__call__


def _blame_annotation(
    owner: Any, params: list[inspect.Parameter], *, label: str, localns: Mapping[str, Any] | None
) -> None:
    """Raise a ToolDefinitionError naming the first parameter whose annotation does not resolve."""
    globalns = getattr(inspect.unwrap(owner), "__globals__", {})
    for p in params:
        if isinstance(p.annotation, str):
            try:
                eval(p.annotation, globalns, dict(localns or {}))  # only to name the culprit
            except Exception as exc:
                raise ToolDefinitionError(
                    f"tool function {label!r}: the annotation {p.annotation!r} of parameter "
                    f"'{p.name}' cannot be resolved ({exc}); define the type at module level or "
                    "import it where the function is defined, or pass localns= (for a type "
                    "defined inside a function: localns=locals())"
                ) from exc


@dataclass(frozen=True, kw_only=True)
class _Docs:
    summary: str
    params: dict[str, str]


def _read_docstring(function: Callable[..., Any], *, label: str) -> _Docs:
    doc = inspect.getdoc(function)
    if not doc:
        return _Docs(summary="", params={})
    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError as exc:
        raise ToolDefinitionError(
            f"tool function {label!r}: its docstring cannot be parsed ({exc}); write it in "
            "Google, NumPy or Sphinx style"
        ) from exc
    # The summary is the docstring's first paragraph, even when it wraps over several lines
    # (docstring_parser cuts `short_description` at the first line break).
    text = (parsed.description or "").strip()
    summary = _collapse(text.split("\n\n", 1)[0]) if text else ""
    params = {
        p.arg_name: _collapse(p.description or "")
        for p in parsed.params
        if p.args and p.args[0] in _PARAM_SECTIONS
    }
    return _Docs(summary=summary, params={k: v for k, v in params.items() if v})


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --- the JSON schema ------------------------------------------------------------------------------

# Keywords whose value is a schema, a list of schemas, or a name -> schema mapping.
_SUBSCHEMA = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
    | {"unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)
_SUBSCHEMA_LIST = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_FIRST = ("type", "description", "properties", "required")
# Keywords that describe a value without restricting it.
_ANNOTATIONS = frozenset(
    {"description", "default", "title", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment"}
)
# Annotations that mean "any JSON value" on purpose; other types with an empty schema are refused.
_ANY = (Any, object, JsonValue)


class _ToolSchema(GenerateJsonSchema):
    """Pydantic's generator, without the `"title": "Unit"` it derives from every field name,
    and strict about unknown keys in nested models."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        # A model that does not choose what to do with unknown keys would drop them silently
        # (pydantic's default, "ignore"): a misspelt field would vanish. Refuse them instead;
        # a model that says extra="allow" or "ignore" explicitly keeps its choice.
        if schema["cls"].model_config.get("extra") is None and "type" in json_schema:
            json_schema.setdefault("additionalProperties", False)
        return json_schema


def build_model(info: FunctionInfo) -> tuple[type[BaseModel], dict[str, str]]:
    """The arguments model (fields `p0`, `p1`... aliased to the parameter names, so any name
    works, even `json` or `model_config`) and the alias -> field map."""
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    for index, param in enumerate(info.params):
        field = f"p{index}"
        fields[field] = _field(param)
        names[param.name] = field
    config = ConfigDict(extra="forbid")
    try:
        model = pydantic.create_model(f"{info.name}_arguments", __config__=config, **fields)
        schema = json_schema_of(model)
    except Exception as exc:
        _blame_parameter(info, exc)
        raise ToolDefinitionError(
            f"tool function {info.label!r}: its parameters have no JSON schema ({exc})"
        ) from exc
    _refuse_empty_schemas(info, schema)
    return model, names


def _refuse_empty_schemas(info: FunctionInfo, schema: JsonSchema) -> None:
    """Refuse a parameter whose schema says nothing (`type[int]`, a TypeVar, `Hashable`):
    the model would be told nothing and any value would pass. `Any` and `object` say so on
    purpose and are kept."""
    properties = schema.get("properties", {})
    for param in info.params:
        prop = properties.get(param.name)
        if not (isinstance(prop, dict) and _is_open(prop)):
            continue
        culprit = _open_member(param.annotation)
        if culprit is not None:
            raise ToolDefinitionError(
                f"tool function {info.label!r}: parameter '{param.name}' has type "
                f"{_type_name(param.annotation)!r}, whose JSON schema is empty, so the model "
                "would be told nothing and any value would pass; use JSON types (str, int, "
                "float, bool, list, dict, Literal, Enum, pydantic models, dataclasses), annotate "
                "it Any to accept any JSON value on purpose, or RunContext[...] to have the "
                "runtime inject it"
            )


def _is_open(schema: JsonSchema) -> bool:
    """True when the schema accepts anything, or has such a member in its top-level anyOf."""
    core = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    members = core.get("anyOf")
    if isinstance(members, list):
        return any(isinstance(m, dict) and _is_open(m) for m in members)
    return not core


def _open_member(annotation: Any) -> Any:
    """The part of `annotation` that has an empty schema without meaning "any value", or None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _open_member(get_args(annotation)[0])
    if any(annotation is a for a in _ANY):
        return None
    if origin is Union or origin is types.UnionType:
        for member in get_args(annotation):
            found = _open_member(member)
            if found is not None:
                return found
        return None
    try:
        schema = pydantic.TypeAdapter(annotation).json_schema()
    except Exception:  # its schema was made as part of the model, so this is not expected
        return None
    return annotation if _is_open(schema) else None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _field(param: Param) -> tuple[Any, FieldInfo]:
    annotation = param.annotation
    default = param.default
    if isinstance(default, FieldInfo):  # `x: int = Field(3, ge=0)`
        annotation = Annotated[annotation, default]
        default = EMPTY
    kwargs: dict[str, Any] = {"alias": param.name}
    # An explicit Field(description=...) beats the docstring.
    if param.description and FieldInfo.from_annotation(annotation).description is None:
        kwargs["description"] = param.description
    if default is not EMPTY:
        kwargs["default"] = default
    return annotation, Field(**kwargs)


def _blame_parameter(info: FunctionInfo, cause: Exception) -> None:
    """Raise a ToolDefinitionError naming the first parameter whose type has no JSON schema."""
    for param in info.params:
        try:
            pydantic.TypeAdapter(param.annotation).json_schema()
        except Exception as exc:
            type_name = getattr(param.annotation, "__name__", None) or repr(param.annotation)
            raise ToolDefinitionError(
                f"tool function {info.label!r}: parameter '{param.name}' has type {type_name!r}, "
                "for which no JSON schema can be made; use JSON types (str, int, float, bool, "
                "list, dict, Literal, Enum, pydantic models, dataclasses), or annotate it "
                "RunContext[...] "
                f"to have the runtime inject it ({_first_line(exc)})"
            ) from cause


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def json_schema_of(model: type[BaseModel]) -> JsonSchema:
    """The cleaned JSON schema of an arguments model."""
    with warnings.catch_warnings():
        # A default with no JSON form is left out of the schema; that is all the warning says.
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        raw = model.model_json_schema(schema_generator=_ToolSchema)
    return clean_schema(raw)


def clean_schema(schema: JsonSchema) -> JsonSchema:
    """Inline non-recursive `$defs`, drop class titles, put `type` and `description` first."""
    defs: dict[str, JsonSchema] = {
        name: {k: v for k, v in body.items() if k != "title"}
        for name, body in schema.get("$defs", {}).items()
    }
    recursive = {name for name in defs if _reaches(name, name, defs, set())}
    root = {k: v for k, v in schema.items() if k not in ("$defs", "title")}
    cleaned = _walk(root, defs, recursive)
    kept = {name: _walk(defs[name], defs, recursive) for name in sorted(recursive)}
    if kept:
        cleaned["$defs"] = kept
    return cleaned


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return ref.removeprefix("#/$defs/")
    return None


def _refs(node: Any) -> Iterator[str]:
    name = _ref_name(node)
    if name is not None:
        yield name
    if isinstance(node, dict):
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reaches(start: str, target: str, defs: dict[str, JsonSchema], seen: set[str]) -> bool:
    for name in _refs(defs.get(start, {})):
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            if _reaches(name, target, defs, seen):
                return True
    return False


def _walk(node: JsonSchema, defs: dict[str, JsonSchema], recursive: set[str]) -> JsonSchema:
    name = _ref_name(node)
    if name is not None and name in defs and name not in recursive:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**copy.deepcopy(defs[name]), **siblings}  # a field's description wins
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _SUBSCHEMA and isinstance(value, dict):
            out[key] = _walk(value, defs, recursive)
        elif key in _SUBSCHEMA_LIST and isinstance(value, list):
            out[key] = [_walk(v, defs, recursive) if isinstance(v, dict) else v for v in value]
        elif key in _SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {k: _walk(v, defs, recursive) for k, v in value.items()}
        else:
            out[key] = value
    first = {k: out[k] for k in _FIRST if k in out}
    return first | {k: v for k, v in out.items() if k not in first}


def make_converter(model: type[BaseModel], names: dict[str, str], info: FunctionInfo) -> Converter:
    """JSON-level arguments -> the Python values passed to the function. Only the arguments given
    are passed, so the function's own defaults apply, except defaults written `= Field(...)`
    (the function's default is then the FieldInfo object). Raises pydantic's ValidationError."""
    aliases = {field: alias for alias, field in names.items()}
    always = frozenset(names[p.name] for p in info.params if isinstance(p.default, FieldInfo))
    validate = model.model_validate

    def convert(arguments: dict[str, Any]) -> dict[str, Any]:
        instance = validate(arguments)
        values = instance.__dict__
        return {aliases[f]: values[f] for f in instance.model_fields_set | always}

    return convert


# --- the direct route: flat signatures checked and converted in one pass -------------------------
#
# Most tools take a few strings, numbers, booleans, string choices and lists of those. For them,
# the schema and the pydantic conversion can be done by one loop over the arguments: the usual
# call is valid as written, and then both would only confirm the JSON types. The route answers
# only "valid, these are the values" (exactly what the fast check and pydantic would give) or "not
# known": anything else (a wrong type, a missing argument, 1.0 for an integer, NaN) takes the full
# route, which makes the coercions and words the problems.

Direct = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_EXACT = 2**53  # integers up to this are floats exactly: pydantic's float(n) cannot differ
_JSON_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SCHEMA_NOTES = frozenset({"description", "default"})  # annotations only: they check nothing
_NO: Any = object()  # not taken: the full route decides


@dataclass(frozen=True, slots=True)
class _Accept:
    """What a parameter (or a list's item) takes on the direct route: values of `types` as they
    are (a string only among `choices`, when set); for a float, JSON numbers made floats; for a
    list, a list of what `items` takes."""

    types: frozenset[type]
    choices: frozenset[str] | None = None
    number: bool = False
    items: _Accept | None = None

    def optional(self) -> _Accept:
        return _Accept(self.types | {type(None)}, self.choices, self.number, self.items)


def make_direct(info: FunctionInfo, schema: Mapping[str, Any]) -> Direct | None:
    """The one-pass check and conversion of a flat signature (parameters `str`, `int`,
    `float`, `bool`, `Literal` of strings, lists of those, each possibly `| None`, no
    `Field(...)` defaults), or None for any other. It returns the values pydantic would, or None
    when the full route must decide. The schema made from the signature is checked to say the
    same, or there is no route.
    """
    if not set(schema) <= {"type", "properties", "required", "additionalProperties"} or (
        schema.get("type") != "object" or schema.get("additionalProperties") is not False
    ):
        return None
    properties = schema.get("properties", {})
    accepts: dict[str, _Accept] = {}
    for param in info.params:
        if isinstance(param.default, FieldInfo):
            return None
        accept = _accept_of(param.annotation)
        if accept is None or _accept_in(properties.get(param.name)) != accept:
            return None
        accepts[param.name] = accept
    required = tuple(p.name for p in info.params if p.default is EMPTY)
    if set(properties) != set(accepts) or set(schema.get("required", ())) != set(required):
        return None

    def direct(arguments: dict[str, Any]) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        for name, value in arguments.items():
            accept = accepts.get(name)
            if accept is None:
                return None
            value = _taken(value, accept)
            if value is _NO:
                return None
            values[name] = value
        for name in required:
            if name not in values:
                return None
        return values

    return direct


def _taken(value: Any, accept: _Accept) -> Any:
    """The value pydantic makes of `value`, or `_NO` when the full route must decide."""
    kind = type(value)
    if accept.number and (kind is float or kind is int):
        if kind is float:
            return value if math.isfinite(value) else _NO  # the full route says why not
        return float(value) if -_EXACT <= value <= _EXACT else _NO
    if kind is list and accept.items is not None:
        taken = []
        for item in value:
            item = _taken(item, accept.items)
            if item is _NO:
                return _NO
            taken.append(item)
        return taken  # a new list, as pydantic's
    if kind not in accept.types or (
        kind is str and accept.choices is not None and value not in accept.choices
    ):
        return _NO
    return value


def _accept_of(annotation: Any) -> _Accept | None:
    """What a parameter of this annotation takes, if it is one the direct route knows."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = get_args(annotation)
        if len(members) != 2 or type(None) not in members:
            return None
        (inner,) = [m for m in members if m is not type(None)]
        accept = _accept_of(inner)
        return accept.optional() if accept is not None else None
    if origin is list:
        (item,) = get_args(annotation)
        items = _accept_of(item)
        return _Accept(frozenset(), items=items) if items is not None else None
    if origin is typing.Literal:
        choices = get_args(annotation)
        if not choices or any(type(c) is not str for c in choices):
            return None
        return _Accept(frozenset({str}), frozenset(choices))
    if annotation is float:
        return _Accept(frozenset(), number=True)
    if annotation is str or annotation is int or annotation is bool:
        return _Accept(frozenset({annotation}))
    return None


def _accept_in(prop: Any) -> _Accept | None:
    """What a property's schema takes, read the same way (None: a shape the route does not know),
    so that the route never trusts an annotation whose schema says more."""
    if not isinstance(prop, dict):
        return None
    core = {k: v for k, v in prop.items() if k not in _SCHEMA_NOTES}
    if set(core) == {"anyOf"} and isinstance(core["anyOf"], list) and len(core["anyOf"]) == 2:
        first, second = core["anyOf"]
        inner = _accept_in(first)
        if second != {"type": "null"} or inner is None:
            return None
        return inner.optional()
    if set(core) == {"type", "items"} and core["type"] == "array":
        items = _accept_in(core["items"])
        return _Accept(frozenset(), items=items) if items is not None else None
    if set(core) == {"type", "enum"} and core["type"] == "string":
        choices = core["enum"]
        if not isinstance(choices, list) or any(type(c) is not str for c in choices):
            return None
        return _Accept(frozenset({str}), frozenset(choices))
    if set(core) == {"type"}:
        for kind, name in _JSON_TYPE.items():
            if core["type"] == name:
                return _accept_of(kind)
    return None
