"""llama-agent: Llama 3.x tool use in its native format, served by Ollama.

```python
from agent import Agent

async with Agent("llama3.1", tools=[add], system="Be brief.") as agent:
    result = await agent.run("What is 2 + 40?")  # `add`: a typed, documented function
    print(result.answer, result.status)
```

The names below load on first use, so `import agent.llama3` (the pure format layer) does not
pull in the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.backends import Backend, GenerateOptions, OllamaBackend, Usage
    from agent.config import load_agent
    from agent.llama3 import Message, ToolCall
    from agent.loop import (
        Agent,
        Event,
        Limits,
        MalformedCall,
        RunFinished,
        RunResult,
        RunStarted,
        RunStatus,
        RunStream,
        RunUsage,
        StepFinished,
        TextDelta,
        ToolCallFinished,
        ToolCallParsed,
        ToolCallRejected,
        ToolCallStarted,
        ToolCallValidated,
        event_to_dict,
    )
    from agent.toolkit import RunContext, Tool, Toolbox, ToolResult, tool

__all__ = [
    "Agent",
    "Backend",
    "Event",
    "GenerateOptions",
    "Limits",
    "MalformedCall",
    "Message",
    "OllamaBackend",
    "RunContext",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "StepFinished",
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
    "event_to_dict",
    "load_agent",
    "tool",
]

_HOME = {
    "agent.config": ("load_agent",),
    "agent.loop": (
        "Agent",
        "Event",
        "Limits",
        "MalformedCall",
        "RunFinished",
        "RunResult",
        "RunStarted",
        "RunStatus",
        "RunStream",
        "RunUsage",
        "StepFinished",
        "TextDelta",
        "ToolCallFinished",
        "ToolCallParsed",
        "ToolCallRejected",
        "ToolCallStarted",
        "ToolCallValidated",
        "event_to_dict",
    ),
    "agent.toolkit": ("RunContext", "Tool", "ToolResult", "Toolbox", "tool"),
    "agent.backends": ("Backend", "GenerateOptions", "OllamaBackend", "Usage"),
    "agent.llama3": ("Message", "ToolCall"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
