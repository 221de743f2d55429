"""The seam between the loop and a model server: one small ABC, and what every backend shares.

A backend takes the full native prompt (starting with `<|begin_of_text|>`) and streams the
completion text. It owns everything about the wire: context sizing, retries, timeouts, and the
translation of foreign exceptions into `agent.errors`. Here: the ABC, the events it streams
(`TextChunk`, then one `Done` with its `Usage`), the per-request `GenerateOptions`, `ModelInfo`,
and the transport settings (`Timeouts`, `Retries`) any HTTP backend takes.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

DoneReason = Literal["stop", "length", "unload", "other"]
Family = Literal["3.1", "3.2", "3.3", "unknown"]  # the Llama 3.x prompt format a model speaks


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
    family: Family
    capabilities: tuple[str, ...] = ()
    server_version: str = ""

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.capabilities


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Deadlines in seconds for talking to the model server (`None`: no deadline for that step).

    `first_chunk` runs from sending the request to the first NDJSON line: it covers the server's
    queue, loading the model and evaluating the prompt, so it is long. `between_chunks` bounds
    the silence between two lines once tokens flow. `total` bounds one `generate` call, retries
    included. `request` bounds the small calls (`/api/show`, `/api/version`).
    """

    connect: float | None = 5.0
    first_chunk: float | None = 300.0
    between_chunks: float | None = 60.0
    total: float | None = 900.0
    request: float | None = 30.0


@dataclass(frozen=True, kw_only=True)
class Retries:
    """What the backend retries on its own.

    * `busy_attempts`: how many times a request is sent while the server answers 503 (busy:
      Ollama's queue is full); waits grow as `backoff_base * 2**n`, capped at `backoff_max`,
      with jitter (each wait is drawn between half and all of that).
    * `dropped_streams`: how many times a stream that broke off is sent again. Before any text
      the same request is repeated; after text the stream is resumed (see `OllamaBackend`).
    """

    busy_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    dropped_streams: int = 1

    def backoff(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait before attempt `failures + 1` (`failures` ≥ 1)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (failures - 1))
        draw: float = (rng or random.Random()).random()
        return ceiling / 2 + draw * ceiling / 2


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
