"""The tool definition: `Tool`, an immutable value built from a typed function
(`Tool.from_function`, or `@tool`, which calls it) or from a JSON schema and a callable
(`Tool.from_schema`), the definition-time checks on its options, and `Toolbox`, the tools of one
agent."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, overload

import anyio
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from typing_extensions import ParamSpec, TypeVar

from agent.errors import ToolDefinitionError, ToolExecutionError, UnknownToolError
from agent.llama3 import BUILTIN_NAMES, BuiltinName, ToolSpec
from agent.toolkit._describe import shown_parameters
from agent.toolkit._execute import BoundCall, RunContext, ToolResult, execute_call
from agent.toolkit._schema import (
    EMPTY,
    FunctionInfo,
    build_model,
    check_name,
    json_schema_of,
    make_converter,
    make_direct,
    read_function,
)
from agent.toolkit._validate import ArgumentChecker, schema_problems

P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)

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


def check_timeout(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ToolDefinitionError(
            f"tool '{name}': timeout must be a positive number of seconds, got {value!r}"
        )
    return float(value) if not math.isinf(value) else math.inf


def check_retries(name: str, value: int) -> int:
    return _count(name, "retries", value, 0)


def check_max_output(name: str, value: int) -> int:
    return _count(name, "max_output", value, _MIN_OUTPUT)


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


@dataclass(frozen=True, kw_only=True)
class Calling:
    """How to call the function: where the run context goes, which parameters are positional."""

    context_param: str | None
    context_optional: bool
    positional: tuple[str, ...]
    positional_defaults: Mapping[str, Any]

    @classmethod
    def of(cls, info: FunctionInfo) -> Calling:
        return cls(
            context_param=info.context_param,
            context_optional=info.context_optional,
            positional=info.positional,
            positional_defaults={p.name: p.default for p in info.params if p.positional_only},
        )


@dataclass(frozen=True, kw_only=True)
class Tool(Generic[P, R]):
    """A function the model can call: its name, description and JSON schema, and the checks and
    limits around each call.

    Build one with `@tool` / `Tool.from_function` (from a typed function) or `Tool.from_schema`
    (from a JSON schema and a callable). A tool made from a function stays callable like the
    function (`add(1, 2)`), for unit tests.

    - `parameters`: the JSON schema shown to the model; it is also the contract every call is
      validated against. Do not mutate it.
    - `builtin`: the Llama built-in this tool serves (`brave_search`, `wolfram_alpha`,
      `code_interpreter`), or None.
    - `timeout` (seconds), `retries` (invalid calls the model may make before the run gives up on
      this tool), `max_output` (characters of result shown to the model).
    - `approval`: each call waits for a yes from the program or a person before it runs (see
      `Agent(approve=...)`); a refused call never runs and the model is told.
    - `spec`: the `agent.llama3.ToolSpec` the renderer shows. Its parameter descriptions end
      with a type note (`Temperature unit (one of 'C', 'F', optional, default 'C')`), because
      Meta's templates show no types, allowed values or defaults; otherwise it is `parameters`.
    - `function`: the callable.

    Tools are immutable values (two tools made the same way from the same function are equal);
    `with_options` makes a changed copy.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[P, R]
    builtin: BuiltinName | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    max_output: int = DEFAULT_MAX_OUTPUT
    approval: bool = False
    # What the factories read from the function: derived, so not part of a tool's identity.
    calling: Calling = field(repr=False, compare=False)
    is_async: bool = field(repr=False, compare=False)
    _checker: ArgumentChecker = field(repr=False, compare=False)
    spec: ToolSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The options' checks live here, so the factories and with_options() share them.
        check_builtin(self.name, self.builtin, self.parameters)
        _set = object.__setattr__  # frozen: only __post_init__ writes
        _set(self, "timeout", check_timeout(self.name, self.timeout))
        _set(self, "retries", check_retries(self.name, self.retries))
        _set(self, "max_output", check_max_output(self.name, self.max_output))
        if not isinstance(self.approval, bool):
            raise ToolDefinitionError(
                f"tool '{self.name}': approval must be True or False, got {self.approval!r}"
            )
        # Meta's templates drop types, enums and defaults: the descriptions carry them.
        spec = ToolSpec(
            name=self.name,
            description=self.description,
            parameters=shown_parameters(self.parameters),
            builtin=self.builtin,
        )
        _set(self, "spec", spec)
        # Look like the function to help(), inspect.signature() and IDEs.
        _set(self, "__wrapped__", self.function)
        _set(self, "__doc__", getattr(self.function, "__doc__", None))
        _set(self, "__name__", self.name)
        _set(self, "__qualname__", getattr(self.function, "__qualname__", self.name))
        _set(self, "__module__", getattr(self.function, "__module__", __name__))

    def __hash__(self) -> int:
        # The schema is a dict: hash what identifies a tool and is hashable.
        return hash((self.name, self.description, self.builtin))

    # --- the two factories ----------------------------------------------------------------

    @classmethod
    def from_function(
        cls,
        function: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        builtin: BuiltinName | None = None,
        max_output: int | None = None,
        localns: Mapping[str, Any] | None = None,
        approval: bool = False,
    ) -> Tool[P, R]:
        """A tool from a typed function (sync or async).

        The description is the docstring's summary, parameter descriptions come from its
        arguments section (Google, NumPy or Sphinx style), the schema from the type hints.
        String annotations (`from __future__ import annotations`) are resolved against the
        function's module; a type defined inside a function needs `localns=locals()`.
        A parameter annotated `RunContext[...]` is injected at run time and never shown to the
        model. Raises `ToolDefinitionError` naming the function and parameter at fault.
        """
        info = read_function(function, localns=localns, strict=True)
        tool_name = check_name(name if name is not None else info.name, label=repr(info.label))
        model, names = build_model(info)
        parameters = json_schema_of(model)
        return cls(
            name=tool_name,
            description=info.summary if description is None else description,
            parameters=parameters,
            function=function,
            calling=Calling.of(info),
            is_async=info.is_async,
            _checker=ArgumentChecker(
                tool_name,
                parameters,
                make_converter(model, names, info),
                direct=make_direct(info, parameters),
            ),
            builtin=builtin,
            approval=approval,
            **_given(timeout=timeout, retries=retries, max_output=max_output),
        )

    @classmethod
    def from_schema(
        cls,
        *,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        function: Callable[..., Any],
        timeout: float | None = None,
        retries: int | None = None,
        builtin: BuiltinName | None = None,
        max_output: int | None = None,
        approval: bool = False,
    ) -> Tool[..., Any]:
        """A tool from a JSON schema and a callable (tools from YAML or other sources).

        Calls are validated against `parameters` (Draft 2020-12, with the same coercions) and
        the function receives the arguments as keyword arguments, JSON values unchanged, plus
        the run context if it has a `RunContext` parameter.
        """
        tool_name = check_name(name, label=repr(name))
        schema = checked_schema(tool_name, parameters)
        info = read_function(function, localns=None, strict=False)
        check_function_fits(tool_name, info, schema)
        return cls(
            name=tool_name,
            description=description,
            parameters=schema,
            function=function,
            calling=Calling.of(info),
            is_async=info.is_async,
            _checker=ArgumentChecker(tool_name, schema, None),
            builtin=builtin,
            approval=approval,
            **_given(timeout=timeout, retries=retries, max_output=max_output),
        )

    def with_options(
        self,
        *,
        description: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        max_output: int | None = None,
        approval: bool | None = None,
    ) -> Tool[P, R]:
        """A copy with other limits, description or approval (e.g. from a config file); same
        schema."""
        changes = _given(
            description=description,
            timeout=timeout,
            retries=retries,
            max_output=max_output,
            approval=approval,
        )
        return dataclasses.replace(self, **changes)

    # --- use ------------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself: no validation, no timeout, no context injection."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        served = f", builtin={self.builtin!r}" if self.builtin else ""
        return f"Tool(name={self.name!r}{served})"

    def validate(self, arguments: Mapping[str, Any]) -> BoundCall:
        """Check model-written arguments against `parameters`, apply the safe coercions and
        convert them to Python values. Raises `agent.errors.InvalidArgumentsError`, one line per
        problem (`add: argument 'b' must be an integer, got "ten"`)."""
        checked = self._checker.check(arguments)
        return BoundCall(
            tool=self,
            arguments=checked.arguments,
            coercions=checked.coercions,
            values=checked.values,
        )

    def convert(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The Python values for already-validated JSON arguments (validated again on the way)."""
        return self._checker.check(arguments).values

    async def execute(
        self,
        call: BoundCall,
        *,
        context: RunContext[Any] | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        on_abandon: Callable[[], object] | None = None,
    ) -> ToolResult:
        """Run a validated call under the tool's timeout and return what the model sees.

        Never raises, except cancellation and KeyboardInterrupt: an exception (SystemExit
        included), a timeout or a missing run context becomes `ToolResult(is_error=True, ...)`,
        with the exception and traceback kept for the program. Sync functions run in a worker
        thread under `limiter` (default: the event loop's tool limiter, see
        `set_thread_limit`), async ones in a task of their own (but one whose code has no
        `await`, which runs at once in the caller's task); on timeout or cancellation the
        thread is abandoned, and so is a task that does not end within `ABANDON_AFTER` seconds
        of being cancelled (`on_abandon` is called when that happens on cancellation). Past
        `set_abandoned_limit`'s caps, the tool's calls are refused.
        """
        if call.tool is not self:
            error = ToolExecutionError(
                f"this call was validated by tool {call.tool.name!r}, not {self.name!r}"
            )
            return ToolResult(text=f"{self.name} failed: {error}", is_error=True, exception=error)
        return await execute_call(
            self, call, context=context, limiter=limiter, on_abandon=on_abandon
        )


def _given(**options: Any) -> dict[str, Any]:
    """The options that were given: the others keep `Tool`'s defaults."""
    return {key: value for key, value in options.items() if value is not None}


@overload
def tool(function: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    builtin: BuiltinName | None = None,
    max_output: int | None = None,
    localns: Mapping[str, Any] | None = None,
    approval: bool = False,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    builtin: BuiltinName | None = None,
    max_output: int | None = None,
    localns: Mapping[str, Any] | None = None,
    approval: bool = False,
) -> Any:
    """Make a typed function a `Tool` with `Tool.from_function`: bare `@tool`, or
    `@tool(name=..., timeout=..., approval=True)`.

    ```python
    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b
    ```
    """

    def decorate(fn: Callable[..., Any]) -> Tool[..., Any]:
        return Tool.from_function(
            fn,
            name=name,
            description=description,
            timeout=timeout,
            retries=retries,
            builtin=builtin,
            max_output=max_output,
            localns=localns,
            approval=approval,
        )

    return decorate if function is None else decorate(function)


class Toolbox:
    """An ordered, immutable set of tools with unique names.

    Plain functions are made tools with `Tool.from_function`. A call to a built-in
    (`brave_search`) reaches the tool declared with `builtin="brave_search"`, whatever its name.
    """

    def __init__(self, tools: Iterable[Tool[..., Any] | Callable[..., Any]] = ()) -> None:
        by_name: dict[str, Tool[..., Any]] = {}
        by_builtin: dict[str, Tool[..., Any]] = {}
        for item in tools:
            current = item if isinstance(item, Tool) else Tool.from_function(item)
            if current.name in by_name:
                raise ToolDefinitionError(
                    f"two tools are named '{current.name}'; tool names must be unique: rename "
                    "one with name=..."
                )
            if current.builtin is not None:
                if current.builtin in by_builtin:
                    raise ToolDefinitionError(
                        f"tools '{by_builtin[current.builtin].name}' and '{current.name}' both "
                        f"serve the built-in '{current.builtin}'; keep one"
                    )
                by_builtin[current.builtin] = current
            by_name[current.name] = current
        # No tool can be named after a built-in it does not serve (Tool refuses it), so a
        # name and a built-in never point at two different tools.
        self._tools = tuple(by_name.values())
        self._by_name = by_name
        self._by_builtin = by_builtin
        self._specs = tuple(t.spec for t in self._tools)
        # Asked for on every step (the parser's names, unknown-tool errors): made once.
        self._names = tuple(by_name)
        self._callable_names = tuple(t.builtin or t.name for t in self._tools)

    def resolve(self, name: str) -> Tool[..., Any]:
        """The tool a call named `name` goes to: by tool name, else by the built-in it serves.
        Raises `UnknownToolError` listing the names the model can call."""
        found = self._by_name.get(name) or self._by_builtin.get(name)
        if found is None:
            raise UnknownToolError(name, self.callable_names)
        return found

    @property
    def tools(self) -> tuple[Tool[..., Any], ...]:
        """The tools, in order."""
        return self._tools

    @property
    def names(self) -> tuple[str, ...]:
        """The tools' names, in order."""
        return self._names

    @property
    def callable_names(self) -> tuple[str, ...]:
        """The names the model calls them by: the built-in's name for tools serving one."""
        return self._callable_names

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """What the renderer shows the model, in order."""
        return self._specs

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool[..., Any]]:
        return iter(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._by_builtin

    def __repr__(self) -> str:
        return f"Toolbox({list(self._by_name)!r})"
