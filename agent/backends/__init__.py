"""Model servers behind one small ABC; the Ollama raw-mode backend.

```python
from agent.backends import GenerateOptions, OllamaBackend

async with OllamaBackend() as backend:
    async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
        ...
```
"""

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
from agent.backends._ollama import OllamaBackend

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
