"""Model servers behind one small ABC; the Ollama raw-mode backend.

```python
from agent.backends import GenerateOptions, OllamaBackend

async with OllamaBackend() as backend:
    async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
        ...
```

Inside, shared by every backend: `_base` (the `Backend` ABC, its events, options, `Timeouts`,
`Retries`, host parsing), `_wire` (HTTP clients per event loop, transport failures, dropped
streams, reading an NDJSON body under deadlines and size caps) and `_context` (`num_ctx` sizing,
token counting, model info). Per server: `_ollama` (the backend: retries, resumption, checks)
and `_ollama_api` (Ollama's HTTP API and its errors). Other engines, each a module of its own
beside `_ollama` built on the shared three, its wire in a second one: `_vllm`/`_vllm_api`
(vLLM's OpenAI-compatible server), `_sglang`/`_sglang_api` (SGLang's native `/generate`),
`_llamacpp`/`_llamacpp_api` (llama.cpp's `llama-server`).
`_pool`: several hosts of one engine behind one backend (`PoolBackend`), the engines by name
(`ENGINES`, `engine_backend`) and `connect` (one host or a pool).
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
    Retries,
    TextChunk,
    Timeouts,
    Usage,
    parse_host,
    run_affinity,
)

if TYPE_CHECKING:
    from agent.backends._llamacpp import LlamaCppBackend
    from agent.backends._ollama import OllamaBackend
    from agent.backends._ollama_api import PullProgress
    from agent.backends._pool import (
        ENGINES,
        Engine,
        HostState,
        PoolBackend,
        connect,
        engine_backend,
    )
    from agent.backends._sglang import SGLangBackend
    from agent.backends._vllm import VLLMBackend
else:
    # These load the HTTP stack (ollama, httpx, aiohttp): imported on first use, so that
    # `import agent` (and the format layer, `agent.llama3`) does not pay for it.
    _LAZY = {
        "OllamaBackend": "agent.backends._ollama",
        "LlamaCppBackend": "agent.backends._llamacpp",
        "PullProgress": "agent.backends._ollama_api",
        "ENGINES": "agent.backends._pool",
        "Engine": "agent.backends._pool",
        "HostState": "agent.backends._pool",
        "PoolBackend": "agent.backends._pool",
        "connect": "agent.backends._pool",
        "engine_backend": "agent.backends._pool",
        "SGLangBackend": "agent.backends._sglang",
        "VLLMBackend": "agent.backends._vllm",
    }

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


__all__ = [
    "ENGINES",
    "Backend",
    "Done",
    "DoneReason",
    "Engine",
    "GenerateEvent",
    "GenerateOptions",
    "HostState",
    "LlamaCppBackend",
    "ModelInfo",
    "OllamaBackend",
    "PoolBackend",
    "PullProgress",
    "Retries",
    "SGLangBackend",
    "TextChunk",
    "Timeouts",
    "Usage",
    "VLLMBackend",
    "connect",
    "engine_backend",
    "parse_host",
    "run_affinity",
]
