"""The seam between the loop and a model server: one small ABC, and what every backend shares.

A backend takes the full native prompt (starting with `<|begin_of_text|>`) and streams the
completion text. It owns everything about the wire: context sizing, retries, timeouts, and the
translation of foreign exceptions into `agent.errors`. Here: the ABC, the events it streams
(`TextChunk`, then one `Done` with its `Usage`), the per-request `GenerateOptions`, `ModelInfo`,
and the transport settings (`Timeouts`, `Retries`) any HTTP backend takes; and `parse_host`,
the one place a host is checked (flag, environment, YAML), which imports no HTTP library
because `import ollama` itself reads OLLAMA_HOST and fails on a bad one.
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import random
import re
import urllib.parse
import warnings
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from annotated_types import Ge, Gt, Interval

from agent._frozen import stored_at_once

DoneReason = Literal["stop", "length", "unload", "other"]
Family = Literal["3.1", "3.2", "3.3", "unknown"]  # the Llama 3.x prompt format a model speaks
T = TypeVar("T")


def _renamed(**old_names: str) -> Callable[[type[T]], type[T]]:
    """Accept each old keyword (and attribute) of a dataclass as its new field, with a warning."""

    def wrap(cls: type[T]) -> type[T]:
        generated = cls.__init__

        @functools.wraps(generated)
        def __init__(self: T, **kwargs: Any) -> None:
            for old, new in old_names.items():
                if old in kwargs:
                    warnings.warn(
                        f"{cls.__name__}({old}=...) is deprecated; write {new}=...",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    if new in kwargs:
                        raise TypeError(f"{cls.__name__}: {old} is the old name of {new}")
                    kwargs[new] = kwargs.pop(old)
            generated(self, **kwargs)

        def alias(old: str, new: str) -> property:
            def read(self: T) -> Any:
                warnings.warn(
                    f"{cls.__name__}.{old} is deprecated; read {new}", DeprecationWarning, 2
                )
                return getattr(self, new)

            return property(read)

        cls.__init__ = __init__  # type: ignore[assignment]
        for old, new in old_names.items():
            setattr(cls, old, alias(old, new))
        return cls

    return wrap


# `num_ctx_max` is the 0.1 name of `num_ctx` (deprecated, accepted this release).
@_renamed(num_ctx_max="num_ctx")
@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """Sampling options sent with every request. `None` leaves the server's default.

    The same type is a config's `ollama.options` (and its `ollama.keep_alive`): the field
    docstrings and bounds below are the config's too (see `agent.config`). A config is checked
    against the bounds when it is loaded; options built in Python are sent as given.
    """

    num_ctx: Annotated[int, Gt(0)] | None = None
    """The context window sent with every request (capped at the model's own context length).
    One size for every request means Ollama never reloads the model to resize it; Ollama
    allocates the KV cache for it when it loads the model. Unset: sized from the prompt (at
    least 8192, doubling when a conversation outgrows it). A prompt that does not fit is an
    error (`ContextOverflowError`)."""
    temperature: Annotated[float, Ge(0)] | None = None
    """Sampling temperature; 0 is (nearly) deterministic. Unset: the server's default."""
    seed: int | None = None
    """Random seed, for repeatable runs."""
    top_p: Annotated[float, Interval(ge=0, le=1)] | None = None
    """Nucleus sampling: keep the smallest set of tokens whose probability adds up to this."""
    top_k: Annotated[int, Ge(1)] | None = None
    """Sample from the k most likely tokens only."""
    num_predict: Annotated[int, Gt(0)] | None = None
    """Most tokens the model may write per step; a longer answer ends the run with `length`."""
    stop: Sequence[str] = ()
    """Extra stop strings (the Llama 3 end-of-turn tokens are always stop tokens)."""
    keep_alive: str | float | None = None
    """How long Ollama keeps the model loaded after a request: seconds, or a duration such as
    `30m`; negative keeps it loaded. Unset: the server's default (5m)."""
    if TYPE_CHECKING:  # `_renamed` accepts it at run time; not a field
        num_ctx_max: int | None = None

    def __post_init__(self) -> None:
        # A list from a config (or a caller) becomes a tuple: the options are frozen and hashable.
        object.__setattr__(self, "stop", tuple(self.stop))


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class TextChunk:
    """A piece of completion text as it arrives."""

    text: str


@stored_at_once
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
    cached_tokens: int = 0  # prompt tokens the server reused from its cache (not evaluated)


@stored_at_once
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


run_affinity: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "run_affinity", default=None
)
"""The run a `generate` call belongs to (the agent loop sets it to the run's id around each
call). A backend with several hosts (`PoolBackend`) keeps every request of one run on one host,
so that host's prompt cache serves each step; None: a request of its own."""


class Backend(ABC):
    """A model server that completes raw Llama 3 prompts."""

    takes_deadline: ClassVar[bool] = False
    """True when `generate` also takes `deadline=` (an `anyio.current_time()` value, or None)
    and ends the stream by then with `BackendTimeoutError`, however the server behaves. The
    agent loop then leaves a run's deadline to the backend once the stream has started, instead
    of a cancel scope around every chunk (a subclass whose `generate` lacks the keyword must set
    this back to False)."""

    takes_chunked: ClassVar[bool] = False
    """True when `generate` also takes `chunked=False`: the completion's text then comes in one
    `TextChunk`, just before `Done`, however it arrived. For a caller that reads no chunk as it
    comes (`Agent.run`): each chunk would otherwise climb every level of generators for
    nothing. A subclass whose `generate` lacks the keyword must set this back to False."""

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


# --- hosts --------------------------------------------------------------------------------------

HOST_FORMS = "host, host:port, :port or http(s)://host[:port][/path] (e.g. localhost:11434)"
"""The host forms `parse_host` accepts, for messages."""

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def parse_host(host: str | None, *, default_port: int = 11434, server: str = "Ollama") -> str:
    """Resolve an Ollama host exactly as the `ollama` client does (`_parse_host`), or raise
    `ValueError` (one line naming the value and `HOST_FORMS`) for one it would misread.

    Other engines' hosts take the same forms with their own `default_port` (vLLM 8000, SGLang
    30000, llama-server 8080); `server` names the engine in the message.

    None or "" → `http://127.0.0.1:11434`; a bare host gets port 11434 (`default_port`);
    `http://h` port 80; `https://h` port 443; IPv6 addresses are bracketed; a path is kept,
    without a final `/`.
    The client accepts anything and fails later with a misleading error (a port that is not a
    number is a traceback, `12011` "not a canonical IPv4 address", `ftp://` or an `/api`
    suffix an unexpected answer), so those are refused here, where the host enters.
    """
    text, port = host or "", default_port
    scheme, _, hostport = text.partition("://")
    if not hostport:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid {server} host {text!r}: {why}; write {HOST_FORMS}")

    if scheme not in ("http", "https"):
        raise bad(f"the scheme is {scheme or '(empty)'}://, not http:// or https://")
    if any(c.isspace() for c in text):
        raise bad("it contains a space")
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    try:
        given_port = split.port
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    if given_port == 0:
        raise bad("the port is not a number from 1 to 65535")
    if split.username is not None or split.query or split.fragment:
        raise bad("only a scheme, a host, a port and a path may be given")
    name = split.hostname or "127.0.0.1"
    port = given_port or port
    try:
        if isinstance(ipaddress.ip_address(name), ipaddress.IPv6Address):
            name = f"[{name}]"
    except ValueError:
        if not _HOST_NAME.fullmatch(name):
            raise bad(f"{name!r} is not a host name") from None
        if name.replace(".", "").isdigit():
            hint = f" (a port alone is written :{name})" if name.isdigit() else ""
            raise bad(f"{name!r} is neither a host name nor an IPv4 address{hint}") from None
    path = split.path.strip("/")
    if path == "api" or path.endswith("/api"):
        raise bad("leave out the /api suffix (the client adds /api/... itself)")
    if path:
        return f"{scheme}://{name}:{port}/{path}"
    return f"{scheme}://{name}:{port}"
