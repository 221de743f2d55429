"""Reading one streamed NDJSON body under deadlines and size caps, at little cost per line.

`Lines.batch()` returns the complete lines that have arrived, one `await` per network read rather
than one per line. Three things hold whatever the server does:

* **Deadlines, without a cancel scope per chunk.** One timer per stream (`Watchdog`) watches
  the first line, the silence between lines and the total; each read only notes the time. When
  a deadline passes, the timer fails the body's reader (`StreamReader.set_exception`), which
  wakes a waiting read with `Expired`. The timer re-arms itself only when lines came meanwhile,
  so a steady stream costs one timer per `between_chunks` seconds, not one per line.
* **The event loop keeps turning.** When data is already buffered, awaiting it never suspends:
  a server sending lines faster than they are read (30,000 lines/s is enough) would keep the
  task from ever yielding, so no timer, outer cancel scope or Ctrl-C could act. Each read checks
  the clock (the total deadline), and a read that has not suspended for `CHECKPOINT` seconds
  yields to the loop once (`anyio.lowlevel.checkpoint`), where pending cancellation lands.
* **Bounded memory.** A line longer than `max_line` bytes is an error as soon as that much of it
  has arrived, never buffered whole; aiohttp's own flow control bounds what it buffers.
"""

from __future__ import annotations

import asyncio
import math
from typing import Literal

import aiohttp
import anyio.lowlevel

Deadline = Literal["first chunk", "next chunk", "total"]

CHECKPOINT = 0.005
"""Longest time (s) a stream is read without yielding to the event loop."""


class Expired(Exception):
    """A deadline of the stream passed (`which`)."""

    def __init__(self, which: Deadline) -> None:
        super().__init__(which)
        self.which: Deadline = which


class LineTooLong(Exception):
    """A line grew past the cap without ending."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Watchdog:
    """One timer for a stream's deadlines (absolute loop times; `inf`: none).

    `first_at`: the first data; `between`: the longest silence after it (None: unbounded);
    `total_at`: the end of the whole call. The reader calls `begin(now)` at the first data,
    then sets `last` at each read.
    """

    def __init__(
        self,
        content: aiohttp.StreamReader,
        *,
        first_at: float,
        between: float | None,
        total_at: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._between = between
        self._total_at = total_at
        self.last: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._arm(min(first_at, total_at))

    def _arm(self, when: float) -> None:
        self._handle = self._loop.call_at(when, self._fire) if when < math.inf else None

    def _fire(self) -> None:
        now = self._loop.time()
        last = self.last
        if now >= self._total_at:
            which: Deadline = "total"
        elif last is None:
            which = "first chunk"
        elif self._between is None:
            self._arm(self._total_at)
            return
        elif now - last < self._between:
            self._arm(min(last + self._between, self._total_at))
            return
        else:
            which = "next chunk"
        self._handle = None
        self._content.set_exception(Expired(which))

    def begin(self, now: float) -> None:
        """The first data came: from now on the timer watches the silence between lines."""
        self.last = now
        if self._between is not None:
            self.cancel()
            self._arm(min(now + self._between, self._total_at))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Lines:
    """The complete lines of `content`, a batch per read (see the module docstring)."""

    def __init__(
        self,
        content: aiohttp.StreamReader,
        *,
        first_at: float,
        between: float | None,
        total_at: float,
        max_line: int,
    ) -> None:
        self._content = content
        self._time = asyncio.get_running_loop().time
        self._total_at = total_at
        self._max_line = max_line
        self._partial = b""
        self._yielded = self._time()
        self.watchdog = Watchdog(content, first_at=first_at, between=between, total_at=total_at)

    async def batch(self) -> list[bytes]:
        """The next complete lines (never empty), or `[]` at the end of the body.

        Raises `Expired`, `LineTooLong`, or what aiohttp raises for a broken connection.
        """
        content = self._content
        while True:
            data = content.read_nowait()
            now = self._time()
            if data:
                if now >= self._total_at:
                    raise Expired("total")
                if now - self._yielded >= CHECKPOINT:
                    await anyio.lowlevel.checkpoint()  # the fast-stream case: let the loop run
                    self._yielded = now
            else:
                data = await content.readany()  # suspends: the loop runs meanwhile
                now = self._yielded = self._time()
                if not data:  # the end of the body: a last line without its newline counts
                    rest, self._partial = self._partial, b""
                    return [rest] if rest.strip() else []
            watchdog = self.watchdog
            if watchdog.last is None:
                watchdog.begin(now)
            else:
                watchdog.last = now
            if self._partial:
                data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > self._max_line:
                raise LineTooLong(self._max_line)
            if len(data) > self._max_line and any(len(x) > self._max_line for x in lines):
                raise LineTooLong(self._max_line)
            if lines:
                return lines

    async def drain(self, limit: int = 65536) -> bool:
        """Read what is left of the body (at most `limit` bytes); True if it ended cleanly, so
        the connection can serve the next request."""
        content = self._content
        while not content.at_eof():
            data = await content.readany()
            limit -= len(data)
            if not data or limit < 0:
                break
        return content.at_eof() and limit >= 0

    def close(self) -> None:
        self.watchdog.cancel()
