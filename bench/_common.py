"""What every section shares: statistics, results, the emulator as a separate process, memory."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository: `bench` and `agent` import from it


@dataclass(frozen=True, kw_only=True)
class Table:
    """A titled table of strings, printed as text and written as Markdown."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True, kw_only=True)
class Goal:
    """A target from the issue and whether this run met it."""

    name: str
    target: str
    measured: str
    met: bool


@dataclass(kw_only=True)
class SectionResult:
    """One section's outcome: tables for people, `data` for the JSON file."""

    key: str
    title: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None  # where the time goes, when a goal was missed
    seconds: float = 0.0
    measured: str = ""  # when it started (UTC) and the load average then: merged sections differ


# --- statistics ---------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100), linear between the closest ranks."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def ms(seconds: float, digits: int = 2) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


# --- memory -------------------------------------------------------------------------------------


def rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process, from /proc (getrusage as the fallback)."""
    current = peak = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return current, peak


def mb(size: float) -> str:
    return f"{size / 2**20:.0f} MB"


# --- the emulator in its own process ------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment for a child Python: this one, with the repository importable."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}


@dataclass(frozen=True, kw_only=True)
class Emulator:
    """A running emulator process."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (0.0 if /proc cannot say)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def emulator_process(*arguments: str) -> Iterator[Emulator]:
    """`python -m agent.testing serve ARGUMENTS` in a child process.

    A separate process, so the emulator does not share (and slow) the event loop being measured.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.testing", "serve", *arguments],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        if not first.startswith("listening on "):
            raise RuntimeError(f"the emulator did not start (it said {first!r})")
        yield Emulator(url=first.removeprefix("listening on "), pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
