"""Settings and small value types of the Ollama backend."""

from __future__ import annotations

import ipaddress
import random
import urllib.parse
from dataclasses import dataclass

DEFAULT_HOST = "http://127.0.0.1:11434"


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Deadlines in seconds for talking to Ollama (`None`: no deadline for that step).

    `first_chunk` runs from sending the request to the first NDJSON line: it covers Ollama's
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

    * `busy_attempts`: how many times a request is sent while Ollama answers 503 (its queue is
      full); waits grow as `backoff_base * 2**n`, capped at `backoff_max`, with jitter (each wait
      is drawn between half and all of that).
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


@dataclass(frozen=True, kw_only=True)
class PullProgress:
    """One progress line of `ollama pull`: a status, and byte counts while a layer downloads."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the current layer downloaded (0..1), if known."""
        if not self.total or self.completed is None:
            return None
        return min(self.completed / self.total, 1.0)


def parse_host(host: str | None) -> str:
    """Resolve an Ollama host exactly as the `ollama` client does (`_parse_host`).

    None or "" → `http://127.0.0.1:11434`; a bare host gets port 11434; `http://h` port 80;
    `https://h` port 443; IPv6 addresses are bracketed; a path is kept, without a final `/`.
    """
    text, port = host or "", 11434
    scheme, _, hostport = text.partition("://")
    if not hostport:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    name = split.hostname or "127.0.0.1"
    port = split.port or port
    try:
        if isinstance(ipaddress.ip_address(name), ipaddress.IPv6Address):
            name = f"[{name}]"
    except ValueError:
        pass
    if path := split.path.strip("/"):
        return f"{scheme}://{name}:{port}/{path}"
    return f"{scheme}://{name}:{port}"
