# ruff: noqa: E501  (tables of exact messages read best one case per line)
"""Definition time: options, specs, built-ins, tools from schemas, and every refusal."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Hashable
from typing import Annotated, Any

import pytest
from pydantic import Field, JsonValue

from agent.errors import DeveloperError, ToolDefinitionError
from agent.llama3 import ToolSpec
from agent.toolkit import RunContext, Tool, tool


class Conn:
    pass


def untyped(a, b: int) -> int:  # type: ignore[no-untyped-def]
    return b


def star_args(*items: str) -> str:
    return ""


def star_kwargs(**opts: str) -> str:
    return ""


def needs_conn(db: Conn, q: str) -> str:
    return q


def takes_callback(fn: Callable[[int], int]) -> str:
    return ""


def two_contexts(a: RunContext[Any], b: RunContext[Any]) -> str:
    return ""


def generator(n: int):  # type: ignore[no-untyped-def]
    yield n


def unresolved(x: Missing) -> str:  # type: ignore[name-defined]  # noqa: F821
    return ""


def documents_a_ghost(city: str) -> str:
    """Weather.

    Args:
        city: City.
        country: Not a parameter.
    """
    return ""


def brave_search(query: str) -> str:
    return query


def search(q: str) -> str:
    return q


def run_code(code: str, timeout: int) -> str:
    return code


def web(query: str, limit: int = 5) -> str:
    return query


def takes_a_class(kind: type[int]) -> str:
    return ""


def maybe_a_class(kind: type[int] | None = None) -> str:
    return ""


def takes_hashable(key: Hashable) -> str:
    return ""


EMPTY_SCHEMA = "whose JSON schema is empty, so the model would be told nothing and any value would pass; use JSON types (str, int, float, bool, list, dict, Literal, Enum, pydantic models, dataclasses), annotate it Any to accept any JSON value on purpose, or RunContext[...] to have the runtime inject it"


REFUSED: list[tuple[str, Callable[[], object], str]] = [
    ("missing annotation", lambda: tool(untyped),
     "tool function 'untyped': parameter 'a' has no type annotation; annotate it (e.g. 'a: str') so the model is told what to send"),
    ("*args", lambda: tool(star_args),
     "tool function 'star_args': parameter '*items' is not allowed; tools are called with named JSON arguments: use a parameter like 'items: list[...]'"),
    ("**kwargs", lambda: tool(star_kwargs),
     "tool function 'star_kwargs': parameter '**opts' is not allowed; the model fills in named parameters from a JSON schema: declare each one with a type"),
    ("no JSON schema", lambda: tool(needs_conn),
     "tool function 'needs_conn': parameter 'db' has type 'Conn', for which no JSON schema can be made; use JSON types (str, int, float, bool, list, dict, Literal, Enum, pydantic models, dataclasses), or annotate it RunContext[...] to have the runtime inject it (Unable to generate pydantic-core schema for <class 'tests.toolkit.test_definition.Conn'>. Set `arbitrary_types_allowed=True` in the model_config to ignore this error or implement `__get_pydantic_core_schema__` on your type to fully support it.)"),
    ("callable", lambda: tool(takes_callback),
     "tool function 'takes_callback': parameter 'fn' has type 'Callable', for which no JSON schema can be made; use JSON types (str, int, float, bool, list, dict, Literal, Enum, pydantic models, dataclasses), or annotate it RunContext[...] to have the runtime inject it (Cannot generate a JsonSchema for core_schema.CallableSchema)"),
    ("empty schema: type[int]", lambda: tool(takes_a_class),
     f"tool function 'takes_a_class': parameter 'kind' has type 'type[int]', {EMPTY_SCHEMA}"),
    ("empty schema in a union", lambda: tool(maybe_a_class),
     f"tool function 'maybe_a_class': parameter 'kind' has type 'type[int] | None', {EMPTY_SCHEMA}"),
    ("empty schema: Hashable", lambda: tool(takes_hashable),
     f"tool function 'takes_hashable': parameter 'key' has type 'Hashable', {EMPTY_SCHEMA}"),
    ("two contexts", lambda: tool(two_contexts),
     "tool function 'two_contexts': parameters 'a' and 'b' are both RunContext; a tool takes at most one"),
    ("generator", lambda: tool(generator),
     "tool function 'generator' is a generator; a tool returns one value: collect the items and return a list"),
    ("unresolved", lambda: tool(unresolved),
     "tool function 'unresolved': the annotation 'Missing' of parameter 'x' cannot be resolved (name 'Missing' is not defined); define the type at module level or import it where the function is defined, or pass localns= (for a type defined inside a function: localns=locals())"),
    ("ghost in docstring", lambda: tool(documents_a_ghost),
     "tool function 'documents_a_ghost': the docstring documents 'country', which the function does not have; fix the docstring or the signature"),
    ("bad name", lambda: tool(name="get-weather")(search),
     "tool 'search': the name 'get-weather' is not usable; tool names must be identifiers (letters, digits and '_', not starting with a digit, at most 64 characters): pass name=... to choose one"),
    ("not callable", lambda: Tool.from_function(3),  # type: ignore[arg-type]
     "a tool needs a callable, got int"),
    ("built-in name taken", lambda: tool(brave_search),
     "tool 'brave_search': 'brave_search' is a Llama built-in name; pass builtin='brave_search' to serve the built-in, or choose another name"),
    ("photogen", lambda: tool(builtin="photogen")(search),
     "tool 'search': builtin='photogen' cannot be served; the built-ins are 'brave_search', 'wolfram_alpha', 'code_interpreter'"),
    ("unknown built-in", lambda: tool(builtin="web")(search),  # type: ignore[call-overload]
     "tool 'search': builtin='web' cannot be served; the built-ins are 'brave_search', 'wolfram_alpha', 'code_interpreter'"),
    ("built-in arguments", lambda: tool(builtin="brave_search")(search),
     """tool 'search' serves the built-in 'brave_search', whose calls carry exactly {"query": <string>}; its parameters must accept that: missing required argument 'q' (a string); unexpected argument 'query' (allowed: 'q')"""),
    ("code_interpreter arguments", lambda: tool(builtin="code_interpreter")(run_code),
     """tool 'run_code' serves the built-in 'code_interpreter', whose calls carry exactly {"code": <string>}; its parameters must accept that: missing required argument 'timeout' (an integer)"""),
    ("named after another built-in", lambda: tool(name="wolfram_alpha", builtin="brave_search")(search),
     "tool 'wolfram_alpha' serves the built-in 'brave_search' but is named after another built-in; choose another name"),
    ("timeout 0", lambda: tool(timeout=0)(search),
     "tool 'search': timeout must be a positive number of seconds, got 0"),
    ("timeout str", lambda: tool(timeout="3")(search),  # type: ignore[call-overload]
     "tool 'search': timeout must be a positive number of seconds, got '3'"),
    ("retries", lambda: tool(retries=-1)(search),
     "tool 'search': retries must be an integer of at least 0, got -1"),
    ("max_output", lambda: tool(max_output=10)(search),
     "tool 'search': max_output must be an integer of at least 100, got 10"),
    ("schema not an object", lambda: Tool.from_schema(name="s", description="", parameters={"type": "array"}, function=search),
     """tool 's': parameters must be a JSON schema with "type": "object", got {'type': 'array'}"""),
    ("invalid schema", lambda: Tool.from_schema(name="s", description="", parameters={"type": "object", "properties": {"q": {"type": "strng"}}}, function=search),
     "tool 's': parameters is not a valid JSON schema at properties/q/type: 'strng' is not valid under any of the given schemas"),
    ("schema property the function lacks", lambda: Tool.from_schema(name="s", description="", parameters={"type": "object", "properties": {"q": {"type": "string"}, "x": {}}, "required": ["q"]}, function=search),
     "tool 's': the schema has properties 'x' that function 'search' does not accept; add parameters or **kwargs"),
    ("required parameter the schema may omit", lambda: Tool.from_schema(name="s", description="", parameters={"type": "object", "properties": {"q": {"type": "string"}}}, function=search),
     """tool 's': parameter 'q' of function 'search' has no default, so the schema must list it under "required" (and it cannot be positional-only)"""),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_at_definition(case: str, make: Callable[[], object], message: str) -> None:
    with pytest.raises(ToolDefinitionError) as caught:
        make()
    assert str(caught.value) == message
    assert isinstance(caught.value, DeveloperError)


def test_any_and_object_are_allowed_to_accept_anything() -> None:
    def free(
        a: Any,
        b: object,
        c: JsonValue,
        d: Any | None = None,
        e: Annotated[Any, Field(description="Anything.")] = 1,
        f: list[Any] | None = None,
    ) -> str:
        return ""

    made = tool(free)
    assert made.parameters["properties"]["a"] == {}
    assert made.parameters["properties"]["e"] == {"description": "Anything.", "default": 1}
    assert made.validate({"a": [1], "b": {"x": None}, "c": "s"}).arguments["b"] == {"x": None}


def test_defaults_and_spec() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    assert (add.name, add.description, add.builtin) == ("add", "Add two integers.", None)
    assert (add.timeout, add.retries, add.max_output) == (30.0, 3, 16_000)
    assert add.spec.name == "add"
    assert add.spec.description == "Add two integers."
    assert add.spec.builtin is None
    # The spec is the schema with each description ending in a type note (see test_describe).
    assert add.spec.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "(integer)"},
            "b": {"type": "integer", "description": "(integer)"},
        },
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    assert add.parameters["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert repr(add) == "Tool(name='add')"


def test_decorator_options() -> None:
    @tool(name="plus", description="Sum.", timeout=2.5, retries=0, max_output=500)
    async def add(a: int, b: int) -> int:
        """Ignored: description= wins."""
        return a + b

    assert isinstance(add, Tool)
    assert (add.name, add.description, add.timeout, add.retries, add.max_output) == (
        "plus", "Sum.", 2.5, 0, 500,
    )  # fmt: skip
    assert add.spec.name == "plus"


def test_with_options_keeps_the_schema() -> None:
    @tool
    def add(a: int, b: int) -> int:
        return a + b

    quick = add.with_options(timeout=1, retries=1, max_output=200, description="Quick add.")
    assert (quick.timeout, quick.retries, quick.max_output) == (1.0, 1, 200)
    assert quick.parameters is add.parameters
    assert quick.description == "Quick add."
    assert quick.validate({"a": "1", "b": 2}).arguments == {"a": 1, "b": 2}
    assert (add.timeout, add.description) == (30.0, "")
    with pytest.raises(ToolDefinitionError):
        add.with_options(timeout=-1)


def test_a_tool_serving_a_built_in() -> None:
    served = tool(builtin="brave_search")(web)
    assert served.builtin == "brave_search"
    assert (served.spec.name, served.spec.builtin) == ("web", "brave_search")
    assert isinstance(served.spec, ToolSpec)
    assert served.validate({"query": "llama"}).arguments == {"query": "llama"}
    named = Tool.from_function(brave_search, builtin="brave_search")
    assert named.name == "brave_search"
    code = Tool.from_schema(
        name="python",
        description="Run Python.",
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string"}},
            "required": ["code"],
        },
        function=lambda code: code,
        builtin="code_interpreter",
    )
    assert code.builtin == "code_interpreter"


def test_a_tool_looks_like_its_function() -> None:
    def greet(name: str, polite: bool = True) -> str:
        """Greet someone."""
        return name

    made = tool(greet)
    assert inspect.signature(made) == inspect.signature(greet)
    assert made.function is greet
    assert made.__wrapped__ is greet
    assert made.__doc__ == "Greet someone."
    assert made.__name__ == "greet"


def test_a_bound_method_is_a_tool() -> None:
    class Store:
        def __init__(self) -> None:
            self.items = {"pen": 2}

        def count(self, item: str) -> int:
            """How many of an item are in stock."""
            return self.items.get(item, 0)

    count = Tool.from_function(Store().count)
    assert count.name == "count"
    assert list(count.parameters["properties"]) == ["item"]
    assert count("pen") == 2


def test_schema_tools_accept_kwargs_and_inject_context() -> None:
    def handler(ctx: RunContext[str], **arguments: Any) -> str:
        return f"{ctx.deps}:{sorted(arguments)}"

    made = Tool.from_schema(
        name="yaml_tool",
        description="From YAML.",
        parameters={"type": "object", "properties": {"a": {"type": "integer"}}},
        function=handler,
    )
    assert made.calling.context_param == "ctx"
    assert made.parameters == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert made.description == "From YAML."


def test_schema_is_copied_not_shared() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"q": {"type": "string"}},
        "required": ["q"],
    }
    made = Tool.from_schema(name="s", description="", parameters=schema, function=search)
    schema["required"].clear()
    schema["properties"]["q"]["type"] = "integer"
    assert made.parameters == {
        "type": "object",
        "properties": {"q": {"type": "string"}},
        "required": ["q"],
    }
    assert made.validate({"q": "text"}).arguments == {"q": "text"}


def test_tools_are_immutable_values() -> None:
    made = tool(search)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        made.name = "other"  # type: ignore[misc]
    assert made.name == "search"
    assert made == tool(search) == Tool.from_function(search)
    assert hash(made) == hash(tool(search))
    assert made != tool(name="other")(search)
    assert made != made.with_options(timeout=1)
    assert made.with_options(timeout=1) == Tool.from_function(search, timeout=1.0)
    assert len({made, tool(search)}) == 1


def test_a_tool_is_built_by_its_factories_only() -> None:
    def mul(a: int, b: int = 2) -> int:
        """Multiply.

        Args:
            a: First factor.
            b: Second factor.
        """
        return a * b

    typed = Tool.from_function(mul, timeout=5)
    assert (typed.name, typed.description, typed.timeout) == ("mul", "Multiply.", 5)
    assert typed.parameters["required"] == ["a"]
    assert typed.validate({"a": "3"}).arguments == {"a": 3}
    with pytest.raises(TypeError):
        Tool(mul)  # type: ignore[call-arg,misc]
