"""llama-agent: Llama 3.x tool use in its native format, served by Ollama.

```python
from agent import Agent

async with Agent("llama3.1", tools=[add], system="Be brief.") as agent:
    result = await agent.run("What is 2 + 40?")  # `add`: a typed, documented function
    print(result.answer, result.status)
```

Every public name is re-exported here from the package that defines it: `agent.llama3` (the
format), `agent.toolkit` (tools), `agent.backends` (model servers), `agent.loop` (the agent and
its runs), `agent.config` (YAML). The errors are in `agent.errors`.

Some names load on first use: the backends (`OllamaBackend`, `VLLMBackend`, ...), whose modules
are the HTTP stack (ollama, httpx, aiohttp) that `import agent.llama3` (the pure format layer)
and `import agent` must not pay for; and `load_agent`, because `agent.config` builds its YAML
spec from the registered toolsets, whose modules import `agent` (the built-ins use this public
API like any plugin).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from agent.backends import Backend, GenerateOptions, Usage
from agent.llama3 import Message, ToolCall
from agent.loop import (
    Agent,
    ApprovalRequested,
    CallMalformed,
    Event,
    Limits,
    RunFinished,
    RunResult,
    RunStarted,
    RunStatus,
    RunStream,
    RunUsage,
    SQLiteStore,
    StepFinished,
    Store,
    TextDelta,
    ToolCallFinished,
    ToolCallParsed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallValidated,
    event_to_dict,
)
from agent.toolkit import MCPTools, RunContext, Tool, Toolbox, ToolResult, tool

__all__ = [
    "Agent",
    "ApprovalRequested",
    "Backend",
    "CallMalformed",
    "Event",
    "GenerateOptions",
    "Limits",
    "LlamaCppBackend",
    "MCPTools",
    "Message",
    "OllamaBackend",
    "PoolBackend",
    "RunContext",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "SGLangBackend",
    "SQLiteStore",
    "StepFinished",
    "Store",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallParsed",
    "ToolCallRejected",
    "ToolCallStarted",
    "ToolCallValidated",
    "ToolResult",
    "Toolbox",
    "Usage",
    "VLLMBackend",
    "event_to_dict",
    "load_agent",
    "tool",
]

if TYPE_CHECKING:
    from agent.backends import (
        LlamaCppBackend,
        OllamaBackend,
        PoolBackend,
        SGLangBackend,
        VLLMBackend,
    )
    from agent.config import load_agent

    MalformedCall = CallMalformed  # deprecated; at run time `__getattr__` serves it, warning
else:
    # The backends' modules are the HTTP stack: loaded on first use, like `agent.backends` does.
    _BACKENDS = frozenset(
        {"LlamaCppBackend", "OllamaBackend", "PoolBackend", "SGLangBackend", "VLLMBackend"}
    )

    def __getattr__(name: str) -> Any:
        if name in _BACKENDS:
            from agent import backends

            value = getattr(backends, name)
            globals()[name] = value  # later lookups skip this function
            return value
        if name == "load_agent":
            from agent.config import load_agent

            globals()[name] = load_agent
            return load_agent
        if name == "MalformedCall":  # the event's name until 0.1; goes in the next release
            warnings.warn(
                "agent.MalformedCall is deprecated: use agent.CallMalformed (the event was "
                "renamed so it is not confused with agent.llama3.MalformedCall, a parse "
                "result); the old name goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return CallMalformed
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
