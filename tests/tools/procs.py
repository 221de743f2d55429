"""A look at the process table, to prove that no sandbox process outlives its run."""

from __future__ import annotations

import os
from collections.abc import Collection


def processes() -> dict[int, tuple[int, str]]:
    """Every visible process: pid -> (parent pid, command line)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        table[int(entry)] = (int(fields[1]), command)
    return table


def descendants(pid: int | None = None, *, besides: Collection[int] = ()) -> dict[int, str]:
    """Processes below `pid` (default: this test process), zombies included, leaving out the
    processes in `besides` and everything below them (e.g. a pool's idle workers, which may
    still be starting their own children)."""
    root = os.getpid() if pid is None else pid
    table = processes()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, command) in table.items():
            if ppid == parent and child not in found and child not in besides:
                found[child] = command
                frontier.append(child)
    return found


def with_marker(marker: str) -> list[int]:
    """Processes anywhere on the host whose command line contains `marker`."""
    return [pid for pid, (_, command) in processes().items() if marker in command]
