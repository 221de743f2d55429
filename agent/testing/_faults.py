"""Faults the emulator can inject, each a small frozen dataclass.

A fault hits the next `times` requests whose path is in `paths` (`times=None`: every one); one
fault per request, the first that matches in the order they were added. Give them to
`OllamaEmulator(faults=[...])` or add them later with `emu.inject(...)`.

Real server conditions they reproduce (PROTOCOL.md §3.2, §6):

* `Busy()`: 503 `server busy, please try again.  maximum pending requests exceeded`.
* `ServerError()`: 500 `model runner has unexpectedly stopped, …` before any output.
* `DropConnection(after_chunks=k)`: k NDJSON lines, then half a line and a TCP reset
  (k=0: the reset comes before any response).
* `Stall(after_chunks=k, seconds=s)`: k lines, then silence for s seconds (None: until the
  client gives up).
* `GarbageLine(after_chunks=k)`: k lines, then a line that is not JSON; the stream goes on.
* `ErrorLine(after_chunks=k)`: k lines, then
  `{"error": "an error was encountered while running the model: …"}` and the end (status 200).
"""

from __future__ import annotations

from dataclasses import dataclass

GENERATION_PATHS = ("/api/generate", "/api/chat")
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Base of every fault: which requests it hits."""

    times: int | None = 1
    paths: tuple[str, ...] = GENERATION_PATHS


@dataclass(frozen=True, kw_only=True)
class Busy(Fault):
    """Answer 503, as Ollama does when its queue (`OLLAMA_MAX_QUEUE`) is full."""

    message: str = BUSY_MESSAGE


@dataclass(frozen=True, kw_only=True)
class ServerError(Fault):
    """Answer an error status with `{"error": message}` before any output."""

    status: int = 500
    message: str = RUNNER_STOPPED


@dataclass(frozen=True, kw_only=True)
class DropConnection(Fault):
    """Reset the connection after `after_chunks` lines, in the middle of the next one."""

    after_chunks: int = 1


@dataclass(frozen=True, kw_only=True)
class Stall(Fault):
    """Stop sending after `after_chunks` lines, for `seconds` (None: until the client leaves)."""

    after_chunks: int = 0
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class GarbageLine(Fault):
    """Send a line that is not JSON after `after_chunks` lines."""

    after_chunks: int = 1
    line: str = "<html><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True, kw_only=True)
class ErrorLine(Fault):
    """End the stream after `after_chunks` lines with an in-band error line (HTTP status 200)."""

    after_chunks: int = 1
    message: str = (
        "an error was encountered while running the model: unexpected EOF from llama runner"
    )


class FaultBook:
    """The faults still to fire; consumed one request at a time."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self._entries: list[list[object]] = []
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        self._entries.append([fault, fault.times])

    def clear(self) -> None:
        self._entries.clear()

    def take(self, path: str) -> Fault | None:
        """The fault for a request to `path`, if any (and count it as used)."""
        for entry in self._entries:
            fault, left = entry
            assert isinstance(fault, Fault)
            if path not in fault.paths or left == 0:
                continue
            if isinstance(left, int):
                entry[1] = left - 1
            return fault
        return None
