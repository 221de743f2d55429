"""Waiting for processes that may not be our children, without races on reused pids."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time

import anyio

__all__ = ["InitPid", "PidWatch"]

_POLL = 0.005


class PidWatch:
    """A process we wait for: through a pidfd where the kernel has them (Linux >= 5.3), which
    stays bound to that process even if its pid is reused; else by polling its pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        if sys.platform == "linux" and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):  # gone already, or an old kernel
                self.fd = os.pidfd_open(pid)

    def gone(self) -> bool:
        """The process has exited (it may still be an unreaped zombie)."""
        if self.fd is not None:
            return bool(select.select([self.fd], [], [], 0)[0])
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
        except (OSError, IndexError):
            return True

    async def wait(self) -> None:
        """Until the process has exited."""
        if self.fd is not None:
            await anyio.wait_readable(self.fd)
            return
        while not self.gone():  # noqa: ASYNC110  (no pidfd: nothing to wait on but time)
            await anyio.sleep(_POLL)

    def wait_sync(self, timeout: float) -> bool:
        """Block until the process has exited or `timeout` passed; True if it exited."""
        end = time.monotonic() + timeout
        while not self.gone():
            if time.monotonic() > end:
                return False
            if self.fd is not None:
                select.select([self.fd], [], [], max(end - time.monotonic(), 0))
            else:
                time.sleep(_POLL)
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class InitPid:
    """The host pid of the sandbox's init, from what bwrap writes to `--info-fd`."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self.data = bytearray()
        self.pid: int | None = None

    def poll(self) -> bool:
        """Read what is there; True once bwrap closed the pipe (`pid` is then known, or None
        if bwrap failed before it started the sandbox)."""
        if self.fd is None:
            return True
        try:
            while chunk := os.read(self.fd, 4096):
                self.data.extend(chunk)
        except BlockingIOError:
            return False
        with contextlib.suppress(ValueError, AttributeError):
            pid = json.loads(self.data).get("child-pid")
            self.pid = pid if isinstance(pid, int) else None
        self.close()
        return True

    async def wait(self) -> int | None:
        while not self.poll():
            assert self.fd is not None
            await anyio.wait_readable(self.fd)
        return self.pid

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
