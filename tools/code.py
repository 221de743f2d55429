"""Run Python for the model: `code_interpreter` (Llama's trained built-in) and `run_python`.

Code runs in bubblewrap (see `tools._sandbox`): a fresh interpreter per snippet, no network, no
host files but a read-only `/usr` and interpreter, in-memory `/work` and `/tmp`, uid 65534, and
limits on wall time, CPU time, memory, processes, file size and output.

Without a working bubblewrap, running code is refused *when code is run*, not when the tools are
built: `code_tools()` warns once and its tools answer every call with an error that says how to
install bubblewrap (or to set `sandbox: none`), so an agent's other tools keep working.
`sandbox="none"` runs code with no isolation, and says so at creation and on every run.

```python
tools = code_tools(limits=SandboxLimits(wall_seconds=20))
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt

from agent import Tool, tool
from agent.toolkit import ToolsetCheck, ToolsetContext, check_settings

from ._names import Names, default_names, pick
from ._sandbox import (
    INSTALL_HINT,
    UNSANDBOXED_WARNING,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    SandboxSettings,
    StopReason,
    format_result,
)

__all__ = [
    "INSTALL_HINT",
    "CodeSettings",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "SandboxSettings",
    "StopReason",
    "check_sandbox",
    "code_tools",
    "code_toolset",
    "format_result",
]

_GRACE = 10.0  # the tool's own deadline leaves the sandbox time to start, kill and report


@dataclass(frozen=True, kw_only=True)
class CodeSettings:
    """The Python tools (`code_interpreter`, `run_python`); the sandbox is set under `sandbox`."""

    pool_size: Annotated[int, Ge(0)] = 2
    """Interpreters kept warm (each runs one snippet, then is replaced)."""
    timeout: Annotated[float, Gt(0)] | None = None
    """Wall-clock seconds per snippet. Unset: the sandbox's `wall_seconds`."""
    names: Names | None = None
    """`native`: `code_interpreter`, the tool Llama 3.x was trained on (`Environment: ipython`,
    code after `<|python_tag|>`); `custom`: `run_python`, an ordinary tool with a JSON schema;
    `both`. Unset: `native` (every Llama 3.x release documents the code interpreter)."""

    def __post_init__(self) -> None:
        check_settings(self)


def code_toolset(settings: CodeSettings, context: ToolsetContext) -> list[Tool[..., Any]]:
    """The code tools a config's `code` entry asks for, sandboxed as its `sandbox:` says."""
    sandbox: SandboxSettings = context.section or SandboxSettings()
    limits = sandbox.limits
    if settings.timeout is not None:
        limits = dataclasses.replace(limits, wall_seconds=settings.timeout)
    # Made here, not inside code_tools, so that whoever owns the tools can close its pool.
    runner = Sandbox(mode=sandbox.mode, limits=limits, pool_size=settings.pool_size)
    context.resources.append(runner)
    made = code_tools(
        runner=runner, names=settings.names or default_names(context.family, trained=True)
    )
    if sandbox.mode == "none":
        # Unisolated code runs as the user: each call waits for a yes unless the config's
        # `- code: {approval: false}` says otherwise (applied after this).
        made = [t.with_options(approval=True) for t in made]
    return made


def check_sandbox(settings: SandboxSettings | None) -> ToolsetCheck:
    """`llama-agent check`'s sandbox line: does code run here, and how isolated?"""
    sandbox_settings = settings or SandboxSettings()
    # The probe's answer is cached: this is the one the code tool got.
    sandbox = Sandbox(mode=sandbox_settings.mode, limits=sandbox_settings.limits, pool_size=0)
    if not sandbox.available:
        # The agent still runs (search, math); only the code tool's calls fail.
        return ToolsetCheck(what="sandbox", verdict="fail", detail=sandbox.problem or "unavailable")
    verdict: Literal["ok", "warn"] = "ok" if sandbox.sandboxed and sandbox.filtered else "warn"
    return ToolsetCheck(what="sandbox", verdict=verdict, detail=sandbox.description)


def code_tools(
    *,
    sandbox: Literal["bwrap", "none"] = "bwrap",
    limits: SandboxLimits | None = None,
    pool_size: int = 2,
    timeout: float | None = None,
    python: str | None = None,
    python_path: Sequence[str] = (),
    runner: Sandbox | None = None,
    names: Names = "both",
) -> list[Tool[..., Any]]:
    """The `code_interpreter` built-in and the `run_python` custom tool, sharing one sandbox.

    Args:
        sandbox: `"bwrap"` (bubblewrap, the default) or `"none"`: run code WITHOUT isolation,
            which warns at creation and on every run. If bubblewrap is missing or cannot start
            here, the tools are still made (with a `RuntimeWarning`), and each call returns an
            error saying how to install it; code never falls back to running unsandboxed.
        limits: what each run may use; `SandboxLimits()` by default.
        pool_size: interpreters kept started ahead of time (0 disables the warm pool).
        timeout: wall-clock seconds per run; overrides `limits.wall_seconds`.
        python: the interpreter to run code with; by default the runtime's own if the sandbox
            can read it, else the system's `python3`.
        python_path: extra directories (e.g. a site-packages) mounted read-only and importable.
        runner: an existing `Sandbox` to use instead (the arguments above are then ignored), so
            the program can `await runner.aclose()` when it is done (or pass it to
            `Agent(resources=[runner])`).
        names: `"both"` (the default), `"native"` (only `code_interpreter`, the name Llama 3.x
            was trained on) or `"custom"` (only `run_python`).
    """
    if runner is None:
        limits = limits or SandboxLimits()
        if timeout is not None:
            limits = dataclasses.replace(limits, wall_seconds=timeout)
        runner = Sandbox(
            mode=sandbox, limits=limits, pool_size=pool_size, python=python, python_path=python_path
        )
    box = runner
    warning = "" if box.sandboxed else UNSANDBOXED_WARNING
    deadline = box.limits.wall_seconds + _GRACE

    async def run(code: str) -> str:
        return format_result(await box.run(code), box.limits, warning=warning)

    @tool(name="code_interpreter", builtin="code_interpreter", timeout=deadline)
    async def code_interpreter(code: str) -> str:
        """Run Python 3 code and return its output.

        Args:
            code: The program; print what you want to see.
        """
        return await run(code)

    @tool(name="run_python", timeout=deadline, description=_describe(box))
    async def run_python(code: str) -> str:
        """Run Python code.

        Args:
            code: A complete Python 3 program. Print the results you need; the value of a final
                bare expression is printed too.
        """
        return await run(code)

    return pick(names, code_interpreter, run_python)


def _describe(box: Sandbox) -> str:
    limits = box.limits
    where = (
        "in an isolated sandbox: no network, no access to the host's files; "
        "/work and /tmp are writable and discarded after the run"
        if box.sandboxed
        else "WITHOUT a sandbox"
    )
    return (
        f"Run a Python 3 program {where}. Standard library only"
        f"{' plus the configured packages' if box.python_path else ''}. Each run starts fresh; "
        f"limits: {limits.wall_seconds:g} s, {limits.budget()[0] >> 20} MiB. "
        "Returns the status, stdout and stderr."
    )
