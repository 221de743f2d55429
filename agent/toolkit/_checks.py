"""Definition-time checks on a tool's options, its built-in, and a schema given with a callable."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agent.errors import ToolDefinitionError
from agent.llama3 import BUILTIN_NAMES
from agent.toolkit._messages import schema_problems
from agent.toolkit._signature import EMPTY, FunctionInfo

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_MAX_OUTPUT = 16_000
_MIN_OUTPUT = 100  # room for the truncation marker

# The built-ins we serve, and the one argument the parser gives each of their calls.
SERVED_BUILTINS: Mapping[str, str] = {
    "brave_search": "query",
    "wolfram_alpha": "query",
    "code_interpreter": "code",
}


def check_timeout(name: str, value: float | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ToolDefinitionError(
            f"tool '{name}': timeout must be a positive number of seconds, got {value!r}"
        )
    return float(value) if not math.isinf(value) else math.inf


def check_retries(name: str, value: int | None) -> int:
    return DEFAULT_RETRIES if value is None else _count(name, "retries", value, 0)


def check_max_output(name: str, value: int | None) -> int:
    return DEFAULT_MAX_OUTPUT if value is None else _count(name, "max_output", value, _MIN_OUTPUT)


def _count(name: str, option: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ToolDefinitionError(
            f"tool '{name}': {option} must be an integer of at least {minimum}, got {value!r}"
        )
    return value


def check_builtin(name: str, builtin: str | None, parameters: Mapping[str, Any]) -> None:
    if builtin is None:
        if name in BUILTIN_NAMES:
            raise ToolDefinitionError(
                f"tool '{name}': '{name}' is a Llama built-in name; pass builtin='{name}' to "
                "serve the built-in, or choose another name"
            )
        return
    if builtin not in SERVED_BUILTINS:
        served = ", ".join(f"'{b}'" for b in SERVED_BUILTINS)
        raise ToolDefinitionError(
            f"tool '{name}': builtin={builtin!r} cannot be served; the built-ins are {served}"
        )
    if name in BUILTIN_NAMES and name != builtin:
        raise ToolDefinitionError(
            f"tool '{name}' serves the built-in '{builtin}' but is named after another "
            "built-in; choose another name"
        )
    argument = SERVED_BUILTINS[builtin]
    sample = {argument: "x"}
    errors = list(Draft202012Validator(parameters).iter_errors(sample))
    if errors:
        problems = "; ".join(schema_problems(errors, parameters))
        raise ToolDefinitionError(
            f"tool '{name}' serves the built-in '{builtin}', whose calls carry exactly "
            f'{{"{argument}": <string>}}; its parameters must accept that: {problems}'
        )


def checked_schema(name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        raise ToolDefinitionError(
            f'tool \'{name}\': parameters must be a JSON schema with "type": "object", '
            f"got {parameters!r}"
        )
    schema = copy.deepcopy(dict(parameters))  # the caller may change theirs later
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ToolDefinitionError(
            f"tool '{name}': parameters is not a valid JSON schema at {where}: {exc.message}"
        ) from exc
    return schema


def check_function_fits(name: str, info: FunctionInfo, schema: Mapping[str, Any]) -> None:
    """The schema's properties must reach the function, and the function's required
    parameters must be required by the schema, or calls fail with a TypeError at run time."""
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    accepted = {p.name for p in info.params if not p.positional_only}
    if not info.accepts_any_keyword:
        extra = [p for p in properties if p not in accepted]
        if extra:
            raise ToolDefinitionError(
                f"tool '{name}': the schema has properties {', '.join(map(repr, extra))} that "
                f"function {info.label!r} does not accept; add parameters or **kwargs"
            )
    for p in info.params:
        if p.default is EMPTY and (p.positional_only or p.name not in required):
            raise ToolDefinitionError(
                f"tool '{name}': parameter '{p.name}' of function {info.label!r} has no default, "
                'so the schema must list it under "required" (and it cannot be positional-only)'
            )
