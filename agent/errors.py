"""Every error llama-agent raises, grouped by who has to act.

```
LlamaAgentError
├── DeveloperError              the program or its configuration is wrong: fix the code or the file
│   ├── ConfigError             a YAML config is invalid (file, line, key)
│   ├── ToolDefinitionError     a tool function cannot be turned into a tool
│   ├── RenderError             messages or tools that the Llama 3 format cannot express
│   └── SandboxUnavailableError code execution asked for without a usable sandbox
├── ModelError                  the model wrote something unusable: sent back to it as ipython
│   ├── MalformedCallError      a call that is cut off or cannot be parsed
│   ├── UnknownToolError        a call to a tool that does not exist
│   └── InvalidArgumentsError   arguments that do not match the tool's JSON schema
├── ToolExecutionError          a tool raised or timed out (reported to the model as its result)
└── RunError                    the run cannot go on: the operator must act
    ├── MCPServerError          an MCP server does not start (its last stderr lines)
    └── BackendError            talking to the model server failed
        ├── BackendUnreachableError no server at the URL (any engine)
        │   └── OllamaUnreachableError  no Ollama at the URL
        ├── ModelNotFoundError      the model is not pulled
        ├── ModelCapabilityError    the model cannot do what is asked (tools, completion)
        ├── ServerBusyError         503 (or 429) after every retry (any engine)
        │   └── OllamaBusyError     Ollama's queue stayed full
        ├── StreamError             an error line inside a stream, a dropped or garbled stream
        ├── BackendTimeoutError     connect, first chunk, between chunks or total deadline passed
        ├── ContextOverflowError    the conversation does not fit the model's context
        └── BackendResponseError    any other error status from the server
```

Messages say what is wrong and what to do. Exceptions never log themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.loop import RunResult

__all__ = [
    "BackendError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnreachableError",
    "ConfigError",
    "ContextOverflowError",
    "DeveloperError",
    "InvalidArgumentsError",
    "LlamaAgentError",
    "MCPServerError",
    "MalformedCallError",
    "ModelCapabilityError",
    "ModelError",
    "ModelNotFoundError",
    "OllamaBusyError",
    "OllamaUnreachableError",
    "RenderError",
    "RunError",
    "SandboxUnavailableError",
    "ServerBusyError",
    "StreamError",
    "ToolDefinitionError",
    "ToolExecutionError",
    "UnknownToolError",
]


class LlamaAgentError(Exception):
    """Base of every error raised by llama-agent."""


# --- the developer must act -------------------------------------------------------------------


class DeveloperError(LlamaAgentError):
    """The program or its configuration is wrong."""


class ConfigError(DeveloperError):
    """A YAML config is invalid. `str()` is `file:line: key: problem`, one line per problem."""

    def __init__(
        self, message: str, *, path: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        self.problems = tuple(problems) or (message,)


class ToolDefinitionError(DeveloperError):
    """A function cannot become a tool (missing annotation, *args, a type without JSON schema)."""


class RenderError(DeveloperError):
    """Messages or tools that the Llama 3 prompt format cannot express."""


class SandboxUnavailableError(DeveloperError):
    """Code execution was asked for, but no sandbox can run it."""


# --- the model must act (its mistakes go back to it as ipython results) ------------------------


class ModelError(LlamaAgentError):
    """The model wrote something the runtime cannot act on. The message is meant for the model."""


class MalformedCallError(ModelError):
    """A tool call that is cut off or cannot be parsed."""


class UnknownToolError(ModelError):
    """A call to a tool that does not exist; the message lists the tools that do."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) if available else "none"
        super().__init__(f"unknown tool '{name}'; the tools are: {listed}")
        self.name = name
        self.available = tuple(available)


class InvalidArgumentsError(ModelError):
    """Arguments that do not match the tool's schema; one line per problem."""

    def __init__(self, tool: str, problems: Sequence[str]) -> None:
        super().__init__("\n".join(f"{tool}: {p}" for p in problems))
        self.tool = tool
        self.problems = tuple(problems)


class ToolExecutionError(LlamaAgentError):
    """A tool raised or timed out. The message is what the model sees."""


# --- the run cannot go on ----------------------------------------------------------------------


class RunError(LlamaAgentError):
    """The run cannot continue; someone operating the service must act.

    `result`: when `Agent.run()` raises it, the conversation so far (an `agent.RunResult` with
    status `"error"`), so nothing is lost; `None` elsewhere.
    """

    result: RunResult | None = None


class MCPServerError(RunError):
    """An MCP server a tool source names does not start or answer; the message carries the
    last lines it wrote to stderr."""


class BackendError(RunError):
    """Talking to the model server failed."""


class BackendUnreachableError(BackendError):
    """Nothing answers at the model server's URL (any engine; Ollama's is the subclass)."""

    def __init__(self, url: str, detail: str = "", *, advice: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot reach the model server at {url}{why}. "
            + (advice or "Start it, or point --host at a running server.")
        )
        self.url = url


class OllamaUnreachableError(BackendUnreachableError):
    """Nothing answers at the Ollama URL."""

    def __init__(self, url: str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        BackendError.__init__(
            self,
            f"cannot reach Ollama at {url}{why}. Start it with `ollama serve`, or point "
            "OLLAMA_HOST (or --host) at a running server.",
        )
        self.url = url


class ModelNotFoundError(BackendError):
    """The model is not pulled on the server (or, for an engine that serves one model, not the
    one it serves; `advice` then says how to serve it)."""

    def __init__(self, model: str, url: str = "", *, advice: str = "") -> None:
        where = f" on {url}" if url else ""
        super().__init__(
            f"model '{model}' is not available{where}. "
            + (advice or f"Pull it with `ollama pull {model}` (or pass --pull).")
        )
        self.model = model


class ModelCapabilityError(BackendError):
    """The model cannot do what the run needs."""


class ServerBusyError(BackendError):
    """The model server kept answering 503 or 429 (its queue is full); any engine."""


class OllamaBusyError(ServerBusyError):
    """Ollama kept answering 503 (its queue is full)."""


class StreamError(BackendError):
    """An error line inside a stream, or a stream that broke off or could not be read."""


class BackendTimeoutError(BackendError):
    """A deadline passed while waiting for the server."""


class ContextOverflowError(BackendError):
    """The conversation needs more tokens than the model's context holds.

    Never truncated silently. With `prompt_tokens`, the message tells the conversation apart
    from the room kept for the answer (`needed - prompt_tokens`, from `num_predict`). `advice`
    replaces the Ollama advice (which settings to change) for other engines.
    """

    def __init__(
        self,
        *,
        needed: int,
        available: int,
        model: str,
        prompt_tokens: int | None = None,
        advice: str = "",
    ) -> None:
        if prompt_tokens is None:
            counted = f"the conversation needs {needed} tokens"
        else:
            counted = (
                f"the conversation needs {prompt_tokens} tokens, plus {needed - prompt_tokens} "
                f"kept for the answer (num_predict): {needed} in all"
            )
        fits_alone = prompt_tokens is not None and prompt_tokens < available
        change = advice or (
            "Lower ollama.options.num_predict or raise ollama.options.num_ctx (up to the model's "
            "context length). Start a new conversation to free the whole context."
            if fits_alone
            else "Start a new conversation, shorten the history or the tool results, raise "
            "ollama.options.num_ctx (up to the model's context length), or use a model with a "
            "longer context."
        )
        # `num_ctx` is Ollama's setting; the other engines fix the context when they start.
        window = "context" if advice else "context (num_ctx)"
        super().__init__(f"{counted}, but {model}'s {window} holds {available}. {change}")
        self.needed = needed
        self.available = available
        self.model = model
        self.prompt_tokens = prompt_tokens


class BackendResponseError(BackendError):
    """Any other error status from the server."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
