"""Check model-written arguments against the schema the model was shown, then convert them.

The JSON schema is the contract (Draft 2020-12, one compiled validator per tool). A few safe
coercions repair common model slips, each recorded: a digit string where a number is expected
(`"10"` -> 10, `"2.5"` -> 2.5), `"true"`/`"false"` where a boolean is expected, and a JSON string
where an object or array is expected. They apply only where a string is not allowed; nothing
else is guessed.

Most calls are valid: jsonschema-rs says so first (`_fastcheck`, about a microsecond), and
python-jsonschema, which finds the coercions and words the messages, runs only when it does not.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaError
from pydantic import ValidationError as PydanticError

from agent.errors import InvalidArgumentsError
from agent.toolkit._fastcheck import fast_check
from agent.toolkit._messages import (
    json_type,
    leaf_errors,
    path_text,
    pydantic_problems,
    resolve,
    schema_problems,
    show,
)

_INTEGER = re.compile(r"-?[0-9]{1,30}")
_DECIMAL = re.compile(r"-?[0-9]{1,30}\.[0-9]{1,30}")
_ROUNDS = 4  # a JSON string may hold digit strings: parse it, then coerce inside


@dataclass(frozen=True, kw_only=True)
class Checked:
    """Arguments that passed: the JSON-level dict, the coercions made, the Python values."""

    arguments: dict[str, Any]
    coercions: tuple[str, ...]
    values: dict[str, Any]


class ArgumentChecker:
    """Validates (and converts) the arguments of one tool; built once, used for every call."""

    def __init__(
        self,
        tool: str,
        schema: Mapping[str, Any],
        convert: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        self._tool = tool
        self._schema = schema
        self._validator = Draft202012Validator(schema)
        self._fast = fast_check(schema)  # None: a schema it does not cover, python-only
        self._convert = convert

    def check(self, arguments: Mapping[str, Any]) -> Checked:
        """Validate, coerce, convert; raise `InvalidArgumentsError` listing every problem."""
        current: Any = dict(arguments) if isinstance(arguments, Mapping) else arguments
        coercions: list[str] = []
        for _ in range(_ROUNDS):
            errors = self._errors(current)
            if not errors:
                break
            current, made = self._coerce(current, errors)
            if not made:
                raise InvalidArgumentsError(self._tool, schema_problems(errors, self._schema))
            coercions.extend(made)
        else:
            errors = self._errors(current)
            if errors:
                raise InvalidArgumentsError(self._tool, schema_problems(errors, self._schema))
        values = current
        if self._convert is not None:
            try:
                values = self._convert(current)
            except PydanticError as exc:
                raise InvalidArgumentsError(self._tool, pydantic_problems(exc)) from exc
        return Checked(arguments=current, coercions=tuple(coercions), values=values)

    def _errors(self, instance: Any) -> list[SchemaError]:
        """python-jsonschema's errors, unless the fast check already knows there are none."""
        if self._fast is not None and self._fast(instance):
            return []
        try:
            return list(self._validator.iter_errors(instance))
        except OverflowError as exc:  # e.g. a float `multipleOf` against an integer past 1e308
            raise InvalidArgumentsError(
                self._tool, ["a number is too large to check; use a smaller value"]
            ) from exc

    def _coerce(self, root: Any, errors: list[SchemaError]) -> tuple[Any, list[str]]:
        made: list[str] = []
        done: set[tuple[Any, ...]] = set()
        for error in errors:
            for leaf in leaf_errors(error, self._schema):
                path = tuple(leaf.absolute_path)
                if not path or path in done or not isinstance(leaf.instance, str):
                    continue
                replaced, ok = _coerced(leaf.instance, _allowed_types(leaf.schema, self._schema))
                if ok:
                    root = _replace(root, path, replaced)
                    done.add(path)
                    given, now = show(leaf.instance), show(replaced)
                    made.append(f"argument '{path_text(path)}': {given} -> {now}")
        return root, made


def _allowed_types(schema: Any, root: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema admits (an empty set: no restriction by type)."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return set()
    kinds: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(declared)
    if isinstance(schema.get("enum"), list):
        kinds.update(json_type(v) for v in schema["enum"])
    if "const" in schema:
        kinds.add(json_type(schema["const"]))
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, ()):
            sub = _allowed_types(branch, root)
            if not sub:
                return set()
            kinds |= sub
    return kinds


def _coerced(text: str, allowed: set[str]) -> tuple[Any, bool]:
    """The value a string stands for, when the schema admits that value's type and no string."""
    if not allowed or "string" in allowed:
        return None, False
    if ("integer" in allowed or "number" in allowed) and _INTEGER.fullmatch(text):
        return int(text), True
    if "number" in allowed and _DECIMAL.fullmatch(text):
        number = float(text)
        return (number, True) if math.isfinite(number) else (None, False)
    if "boolean" in allowed and text in ("true", "false"):
        return text == "true", True
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and ({"object", "array"} & allowed):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return None, False
        if json_type(parsed) in allowed:
            return parsed, True
    return None, False


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `root` with the value at `path` replaced (only the containers on the path are
    copied: the caller's arguments are never changed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(root, dict):
        return {**root, head: _replace(root[head], rest, value)}
    copied = list(root)
    copied[head] = _replace(copied[head], rest, value)
    return copied
