"""Test helpers that ship with llama-agent: `OllamaEmulator`, a real Ollama for tests.

Needs the `testing` extra: `pip install 'llama-agent[testing]'`.

```python
from agent.testing import OllamaEmulator, call_tool

async with OllamaEmulator(call_tool("add", {"a": 1, "b": 2}, then="3")) as emu:
    backend = OllamaBackend(emu.url)
    ...
```

Scripts (`answer`, `echo`, `sequence`, `call_tool`, `call_tools`, or any function of a
`ScriptRequest`) say what the model writes, for `OllamaEmulator` and `VLLMEmulator` (vLLM's
OpenAI-compatible server, `_vllm`) alike; faults (`Busy`, `ServerError`, `DropConnection`,
`Stall`, `GarbageLine`, `ErrorLine`) say what goes wrong; `emu.requests` says what was asked.
With pytest, the `ollama_emulator` and `scripted_agent` fixtures (`agent.testing.pytest_plugin`,
registered by entry point) give a running emulator and agents that talk to it.

Layout: `_emulator` (the `OllamaEmulator`, its state and small endpoints), `_completion`
(`/api/generate` and `/api/chat`: validation, prompt cache, token counting), `_response` (the
generation, tool calls and NDJSON stream sent back), `_model` (models and their template,
scripts and faults), `_http` (the HTTP/1.1 server), `__main__` (`python -m
agent.testing serve`), `pytest_plugin` (fixtures).

Other engines: `LlamaCppEmulator` (`_llamacpp`) speaks llama.cpp's `llama-server`, driven by the
same scripts and faults; `_llama_server` builds and runs the REAL `llama-server` the tests also
use (`python -m agent.testing llama-server build`).
"""

from __future__ import annotations

from typing import NoReturn

_EXTRA_MISSING = "agent.testing needs the testing extra: pip install 'llama-agent[testing]'"


class TestingExtraMissingError(ImportError):
    """`agent.testing` was used without the `testing` extra (its HTTP server needs h11)."""

    __test__ = False  # a name starting with "Test": not a test class for pytest


try:
    from agent.testing._emulator import OllamaEmulator, RecordedRequest
except ModuleNotFoundError as exc:
    if exc.name != "h11":
        raise
    _missing = exc

    # The package itself still imports, so that the pytest plugin (an entry point of the main
    # distribution, loaded by every pytest run) never breaks pytest for users without the extra;
    # any name taken from it raises instead.
    def __getattr__(name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise TestingExtraMissingError(_EXTRA_MISSING, name="h11") from _missing

else:
    from agent.testing._llamacpp import LlamaCppEmulator
    from agent.testing._model import (
        Busy,
        DropConnection,
        EmulatedModel,
        ErrorLine,
        Fault,
        GarbageLine,
        Script,
        ScriptExhaustedError,
        ScriptRequest,
        ServerError,
        Stall,
        Turn,
        answer,
        call_tool,
        call_tools,
        echo,
        sequence,
        tool_call_text,
    )
    from agent.testing._response import Engine
    from agent.testing._sglang import SGLangEmulator
    from agent.testing._vllm import VLLMEmulator

__all__ = [
    "Busy",
    "DropConnection",
    "EmulatedModel",
    "Engine",
    "ErrorLine",
    "Fault",
    "GarbageLine",
    "LlamaCppEmulator",
    "OllamaEmulator",
    "RecordedRequest",
    "SGLangEmulator",
    "Script",
    "ScriptExhaustedError",
    "ScriptRequest",
    "ServerError",
    "Stall",
    "TestingExtraMissingError",
    "Turn",
    "VLLMEmulator",
    "answer",
    "call_tool",
    "call_tools",
    "echo",
    "sequence",
    "tool_call_text",
]
