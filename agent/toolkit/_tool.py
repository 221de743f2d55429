"""`Tool` and `@tool`: a typed Python function (or a JSON schema and a callable) as a tool."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, overload

import anyio
from typing_extensions import ParamSpec, TypeVar

from agent.errors import ToolDefinitionError, ToolExecutionError
from agent.llama3 import BuiltinName, ToolSpec
from agent.toolkit._calls import BoundCall, ToolResult
from agent.toolkit._checks import (
    check_builtin,
    check_function_fits,
    check_max_output,
    check_retries,
    check_timeout,
    checked_schema,
)
from agent.toolkit._context import RunContext
from agent.toolkit._describe import shown_parameters
from agent.toolkit._execute import execute_call
from agent.toolkit._schema import build_model, json_schema_of, make_converter
from agent.toolkit._signature import FunctionInfo, check_name, read_function
from agent.toolkit._validate import ArgumentChecker

P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)


@dataclass(frozen=True, kw_only=True)
class Calling:
    """How to call the function: where the run context goes, which parameters are positional."""

    context_param: str | None
    context_optional: bool
    positional: tuple[str, ...]
    positional_defaults: Mapping[str, Any]


class Tool(Generic[P, R]):
    """A function the model can call: its name, description and JSON schema, and the checks and
    limits around each call.

    Build one with `@tool`, `Tool.from_function` or `Tool.from_schema`. A tool made from a
    function stays callable like the function (`add(1, 2)`), for unit tests.

    - `parameters`: the JSON schema shown to the model; it is also the contract every call is
      validated against. Do not mutate it.
    - `builtin`: the Llama built-in this tool serves (`brave_search`, `wolfram_alpha`,
      `code_interpreter`), or None.
    - `timeout` (seconds), `retries` (invalid calls the model may make before the run gives up on
      this tool), `max_output` (characters of result shown to the model).
    - `spec`: the `agent.llama3.ToolSpec` the renderer shows. Its parameter descriptions end
      with a type note (`Temperature unit (one of 'C', 'F', optional, default 'C')`), because
      Meta's templates show no types, allowed values or defaults; otherwise it is `parameters`.
    - `function`: the callable.

    Tools are immutable; `with_options` makes a changed copy.
    """

    def __init__(
        self,
        function: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        builtin: BuiltinName | None = None,
        max_output: int | None = None,
    ) -> None:
        """`Tool(fn)` is `Tool.from_function(fn)`; `Tool(fn, name=..., description=...,
        parameters=schema)` is `Tool.from_schema(...)` (a tool from YAML or another source).
        The options (`timeout`, `retries`, `builtin`, `max_output`) are the same for both."""
        if function is None:
            raise ToolDefinitionError(
                "Tool() needs the function: Tool(fn) builds the schema from its type hints, "
                "Tool(fn, name=..., description=..., parameters=schema) takes a JSON schema"
            )
        options = {"timeout": timeout, "retries": retries, "builtin": builtin}
        made: Tool[Any, Any]
        if parameters is None:
            made = Tool.from_function(
                function,
                name=name,
                description=description,
                max_output=max_output,
                _localns=sys._getframe(1).f_locals,
                **options,  # type: ignore[arg-type]
            )
        else:
            if name is None or description is None:
                raise ToolDefinitionError(
                    "Tool(fn, parameters=...) needs name= and description= too (what the "
                    "model sees besides the schema)"
                )
            made = Tool.from_schema(
                name=name,
                description=description,
                parameters=parameters,
                function=function,
                max_output=max_output,
                **options,  # type: ignore[arg-type]
            )
        self._setup(**made._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "function": self.function,
            "checker": self._checker,
            "calling": self.calling,
            "is_async": self.is_async,
            "builtin": self.builtin,
            "timeout": self.timeout,
            "retries": self.retries,
            "max_output": self.max_output,
        }

    @classmethod
    def _make(cls, **fields: Any) -> Tool[Any, Any]:
        tool = cls.__new__(cls)
        tool._setup(**fields)
        return tool

    def _setup(
        self,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        function: Callable[P, R],
        checker: ArgumentChecker,
        calling: Calling,
        is_async: bool,
        builtin: BuiltinName | None,
        timeout: float,
        retries: int,
        max_output: int,
    ) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.function = function
        self.builtin = builtin
        self.timeout = timeout
        self.retries = retries
        self.max_output = max_output
        self.is_async = is_async
        self.calling = calling
        self._checker = checker
        # Meta's templates drop types, enums and defaults: the descriptions carry them.
        self.spec = ToolSpec(
            name=name,
            description=description,
            parameters=shown_parameters(parameters),
            builtin=builtin,
        )
        # Look like the function to help(), inspect.signature() and IDEs.
        self.__wrapped__ = function
        self.__doc__ = getattr(function, "__doc__", None)
        self.__name__ = name
        self.__qualname__ = getattr(function, "__qualname__", name)
        self.__module__ = getattr(function, "__module__", __name__)
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        # The name, schema, spec and checker must agree: change a tool with with_options().
        if getattr(self, "_frozen", False):
            raise AttributeError(f"Tool is immutable; use with_options() (setting {name!r})")
        super().__setattr__(name, value)

    # --- constructors ---------------------------------------------------------------------

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
        _localns: Mapping[str, Any] | None = None,
    ) -> Tool[P, R]:
        """A tool from a typed function (sync or async).

        The description is the docstring's summary, parameter descriptions come from its
        arguments section (Google, NumPy or Sphinx style), the schema from the type hints.
        A parameter annotated `RunContext[...]` is injected at run time and never shown to the
        model. Raises `ToolDefinitionError` naming the function and parameter at fault.
        """
        if _localns is None:  # resolve string annotations against the caller's locals too
            _localns = sys._getframe(1).f_locals
        info = read_function(function, localns=_localns, strict=True)
        tool_name = check_name(name if name is not None else info.name, label=repr(info.label))
        model, names = build_model(info)
        parameters = json_schema_of(model)
        checker = ArgumentChecker(tool_name, parameters, make_converter(model, names, info))
        return cls._finish(
            name=tool_name,
            description=info.summary if description is None else description,
            parameters=parameters,
            function=function,
            checker=checker,
            info=info,
            options=(timeout, retries, builtin, max_output),
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
        return cls._finish(
            name=tool_name,
            description=description,
            parameters=schema,
            function=function,
            checker=ArgumentChecker(tool_name, schema, None),
            info=info,
            options=(timeout, retries, builtin, max_output),
        )

    @classmethod
    def _finish(
        cls,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        function: Callable[P, R],
        checker: ArgumentChecker,
        info: FunctionInfo,
        options: tuple[float | None, int | None, BuiltinName | None, int | None],
    ) -> Tool[P, R]:
        timeout, retries, builtin, max_output = options
        check_builtin(name, builtin, parameters)
        positional_defaults = {p.name: p.default for p in info.params if p.positional_only}
        return cls._make(
            name=name,
            description=description,
            parameters=parameters,
            function=function,
            checker=checker,
            calling=Calling(
                context_param=info.context_param,
                context_optional=info.context_optional,
                positional=info.positional,
                positional_defaults=positional_defaults,
            ),
            is_async=info.is_async,
            builtin=builtin,
            timeout=check_timeout(name, timeout),
            retries=check_retries(name, retries),
            max_output=check_max_output(name, max_output),
        )

    def with_options(
        self,
        *,
        description: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        max_output: int | None = None,
    ) -> Tool[P, R]:
        """A copy with other limits or description (e.g. from a config file); same schema."""
        fields = self._fields()
        if description is not None:
            fields["description"] = description
        if timeout is not None:
            fields["timeout"] = check_timeout(self.name, timeout)
        if retries is not None:
            fields["retries"] = check_retries(self.name, retries)
        if max_output is not None:
            fields["max_output"] = check_max_output(self.name, max_output)
        return type(self)._make(**fields)

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
    ) -> ToolResult:
        """Run a validated call under the tool's timeout and return what the model sees.

        Never raises, except cancellation: an exception, a timeout or a missing run context
        becomes `ToolResult(is_error=True, ...)`, with the exception and traceback kept for
        the program. Sync functions run in a worker thread under `limiter` (default: the
        event loop's tool limiter, see `set_thread_limit`); on timeout or cancellation the
        thread is abandoned and runs on until the function returns.
        """
        if call.tool is not self:
            error = ToolExecutionError(
                f"this call was validated by tool {call.tool.name!r}, not {self.name!r}"
            )
            return ToolResult(text=f"{self.name} failed: {error}", is_error=True, exception=error)
        return await execute_call(self, call, context=context, limiter=limiter)


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
) -> Any:
    """Make a typed function a `Tool`: bare `@tool`, or `@tool(name=..., timeout=...)`.

    ```python
    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b
    ```
    """
    localns = sys._getframe(1).f_locals

    def decorate(fn: Callable[..., Any]) -> Tool[..., Any]:
        return Tool.from_function(
            fn,
            name=name,
            description=description,
            timeout=timeout,
            retries=retries,
            builtin=builtin,
            max_output=max_output,
            _localns=localns,
        )

    return decorate if function is None else decorate(function)
