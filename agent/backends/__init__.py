"""Model servers behind one small ABC; the Ollama raw-mode backend.

```python
from agent.backends import GenerateOptions, OllamaBackend

async with OllamaBackend() as backend:
    async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
        ...
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.backends._base import (
    Backend,
    Done,
    DoneReason,
    GenerateEvent,
    GenerateOptions,
    ModelInfo,
    TextChunk,
    Usage,
)
from agent.backends._config import PullProgress, Retries, Timeouts, parse_host

if TYPE_CHECKING:
    from agent.backends._ollama import OllamaBackend
else:

    def __getattr__(name: str) -> Any:
        # `OllamaBackend` loads the HTTP stack (ollama, httpx, aiohttp): imported on first use,
        # so `import agent` (and the format layer, `agent.llama3`) does not pay for it.
        if name == "OllamaBackend":
            from agent.backends._ollama import OllamaBackend

            globals()[name] = OllamaBackend  # later lookups skip this function
            return OllamaBackend
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backend",
    "Done",
    "DoneReason",
    "GenerateEvent",
    "GenerateOptions",
    "ModelInfo",
    "OllamaBackend",
    "PullProgress",
    "Retries",
    "TextChunk",
    "Timeouts",
    "Usage",
    "parse_host",
]
