"""From a function's parameters to the JSON schema the model sees and the pydantic model that
turns validated JSON into Python values.

The schema is pydantic's, made easier for a small model to read: no generated titles, nested
models inlined where they are not recursive (`$defs` stay only for recursive types), `type` and
`description` first.
"""

from __future__ import annotations

import copy
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, PydanticJsonSchemaWarning
from pydantic_core import core_schema

from agent.errors import ToolDefinitionError
from agent.toolkit._signature import EMPTY, FunctionInfo, Param

JsonSchema = dict[str, Any]
Converter = Callable[[dict[str, Any]], dict[str, Any]]

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
