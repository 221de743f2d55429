"""Read a tool function: its parameters and their types, its docstring, its run-context slot.

Everything a function can get wrong as a tool is refused here, at definition time, with a
`ToolDefinitionError` that names the function and the parameter.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import docstring_parser

from agent.errors import ToolDefinitionError
from agent.toolkit._context import RunContext

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
    """The signature with string annotations (`from __future__ import annotations`) evaluated."""
    try:
        return inspect.signature(function, eval_str=True, locals=localns)
    except (NameError, AttributeError, SyntaxError, TypeError) as exc:
        evaluation_error = exc
    except ValueError as exc:
        raise ToolDefinitionError(f"cannot read the signature of {label!r}: {exc}") from exc
    # Find the parameter whose annotation cannot be evaluated, to name it.
    raw = inspect.signature(function)
    globalns = getattr(inspect.unwrap(function), "__globals__", {})
    for p in raw.parameters.values():
        if isinstance(p.annotation, str):
            try:
                eval(p.annotation, globalns, dict(localns or {}))  # only to name the culprit
            except Exception as exc:
                raise ToolDefinitionError(
                    f"tool function {label!r}: the annotation {p.annotation!r} of parameter "
                    f"'{p.name}' cannot be resolved ({exc}); define the type at module level or "
                    "import it where the function is defined"
                ) from exc
    raise ToolDefinitionError(
        f"tool function {label!r}: its annotations cannot be resolved ({evaluation_error})"
    ) from evaluation_error


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
