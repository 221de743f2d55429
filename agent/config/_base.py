"""The base of every config model: strict, and precise about unknown keys."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

__all__ = ["CUSTOM_ERRORS", "Spec", "suggest"]


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """The closest of `choices` to a misspelt `word`, if one is close enough."""
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


class Spec(BaseModel):
    """Strict: unknown keys and wrong types are errors; values are not coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Unknown keys are reported with the allowed ones (not as pydantic's bare "extra
        # inputs"), and the known keys beside them are still checked, so one run shows all.
        if not isinstance(data, dict):
            return handler(data)
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        unknown = [key for key in data if key not in allowed and key not in cls.model_fields]
        if not unknown:
            return handler(data)
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_keys", "unknown keys {keys}", {"keys": unknown, "allowed": allowed}
                ),
                loc=(),
                input=data,
            )
        ]
        try:
            handler({k: v for k, v in data.items() if k not in unknown})
        except ValidationError as exc:
            errors.extend(_reraise(error) for error in exc.errors())
        raise ValidationError.from_exception_data(cls.__name__, errors)


CUSTOM_ERRORS = frozenset(
    {"unknown_keys", "unknown_builtin", "import_path", "duration", "tool_entry", "size"}
)


def _reraise(error: ErrorDetails) -> InitErrorDetails:
    ctx = error.get("ctx", {})
    kind = error["type"]
    return InitErrorDetails(
        type=PydanticCustomError(kind, error["msg"], ctx) if kind in CUSTOM_ERRORS else kind,
        loc=error["loc"],
        input=error["input"],
        ctx=ctx,
    )
