"""The seam between the loop and a model server: one small ABC.

A backend takes the full native prompt (starting with `<|begin_of_text|>`) and streams the
completion text. It owns everything about the wire: context sizing, retries, timeouts, and the
translation of foreign exceptions into `agent.errors`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

DoneReason = Literal["stop", "length", "unload", "other"]


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """Sampling and transport settings for one request. `None` leaves the server's default."""

    temperature: float | None = None
    seed: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_predict: int | None = None
    stop: Sequence[str] = ()
    keep_alive: str | float | None = None
    # The context size (Ollama's `num_ctx`, capped by the model's context length). Set: every
    # request sends exactly this, so the model is never reloaded for a new size and the memory
    # is what was chosen. None: the backend sizes it to the prompts with room to grow (see
    # `agent/backends/_context.py`). A prompt that does not fit is a `ContextOverflowError`.
    num_ctx_max: int | None = None


@dataclass(frozen=True, kw_only=True)
class TextChunk:
    """A piece of completion text as it arrives."""

    text: str


@dataclass(frozen=True, kw_only=True)
class Usage:
    """What the server reports for one request (durations in nanoseconds, as Ollama sends them)."""

    prompt_eval_count: int = 0
    eval_count: int = 0
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_duration: int = 0
    eval_duration: int = 0
    prompt_tokens_sent: int = 0  # the runtime's own count of the prompt
    num_ctx: int = 0  # the context size requested


@dataclass(frozen=True, kw_only=True)
class Done:
    """The end of a completion. `done_reason == "length"` means the text was cut off."""

    done_reason: DoneReason
    usage: Usage = field(default_factory=Usage)
    warnings: tuple[str, ...] = ()


GenerateEvent = TextChunk | Done


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What the server says about a model."""

    name: str
    context_length: int
    family: Literal["3.1", "3.2", "3.3", "unknown"]
    capabilities: tuple[str, ...] = ()
    server_version: str = ""

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.capabilities


class Backend(ABC):
    """A model server that completes raw Llama 3 prompts."""

    @abstractmethod
    def generate(
        self, prompt: str, *, model: str, options: GenerateOptions
    ) -> AsyncIterator[GenerateEvent]:
        """Stream the completion of `prompt`: `TextChunk`s, then exactly one `Done`."""

    @abstractmethod
    async def model_info(self, model: str) -> ModelInfo:
        """Describe `model` (cached per model). Raises `ModelNotFoundError` if it is not there."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections."""
