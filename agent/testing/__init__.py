"""Test helpers that ship with llama-agent: `OllamaEmulator`, a real Ollama for tests.

```python
from agent.testing import OllamaEmulator, call_tool

async with OllamaEmulator(call_tool("add", {"a": 1, "b": 2}, then="3")) as emu:
    backend = OllamaBackend(emu.url)
    ...
```

Scripts (`answer`, `echo`, `sequence`, `call_tool`, `call_tools`, or any function of a
`ScriptRequest`) say what the model writes; faults (`Busy`, `ServerError`, `DropConnection`,
`Stall`, `GarbageLine`, `ErrorLine`) say what goes wrong; `emu.requests` says what was asked.
"""

from agent.testing._emulator import OllamaEmulator
from agent.testing._faults import (
    Busy,
    DropConnection,
    ErrorLine,
    Fault,
    GarbageLine,
    ServerError,
    Stall,
)
from agent.testing._generation import Engine
from agent.testing._models import EmulatedModel
from agent.testing._records import RecordedRequest
from agent.testing._scripts import (
    Script,
    ScriptExhaustedError,
    ScriptRequest,
    Turn,
    answer,
    call_tool,
    call_tools,
    echo,
    sequence,
    tool_call_text,
)

__all__ = [
    "Busy",
    "DropConnection",
    "EmulatedModel",
    "Engine",
    "ErrorLine",
    "Fault",
    "GarbageLine",
    "OllamaEmulator",
    "RecordedRequest",
    "Script",
    "ScriptExhaustedError",
    "ScriptRequest",
    "ServerError",
    "Stall",
    "Turn",
    "answer",
    "call_tool",
    "call_tools",
    "echo",
    "sequence",
    "tool_call_text",
]
