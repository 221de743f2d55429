"""The sandbox's settings and results."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from agent.errors import DeveloperError

__all__ = ["SandboxLimits", "SandboxResult", "StopReason"]

StopReason = Literal["timeout", "cpu", "memory", "output", "signal"]
"""Why a run did not finish on its own: the wall-clock limit, the CPU-time limit, the memory
limit (an uncaught MemoryError), the output limit, or a signal from elsewhere."""


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """What one run of code may use. Every limit applies to each run separately.

    Memory and file size are per process (rlimits): a run may use up to `processes` times
    `memory_bytes` in total. A portable total limit would need cgroups, which most hosts do not
    delegate.
    """

    wall_seconds: float = 10.0
    """Wall-clock time; the whole process tree is killed when it passes."""
    cpu_seconds: int = 5
    """CPU time per process (RLIMIT_CPU): SIGXCPU, then SIGKILL one second later."""
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS): allocations past it raise MemoryError."""
    processes: int = 32
    """Processes and threads, counted inside the sandbox (RLIMIT_NPROC)."""
    file_bytes: int = 10 << 20
    """Largest file a run may write (RLIMIT_FSIZE)."""
    output_bytes: int = 1 << 20
    """stdout and stderr together; the run is killed when it prints more."""
    tmpfs_bytes: int = 64 << 20
    """Size of each in-memory filesystem (`/work` and `/tmp`), when bubblewrap supports `--size`."""
    code_bytes: int = 1 << 20
    """Largest snippet accepted."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise DeveloperError(f"SandboxLimits.{field.name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SandboxResult:
    """What one run produced."""

    stdout: str
    stderr: str
    exit_code: int | None
    """The code's exit status; None when it was killed by a signal."""
    stopped: StopReason | None = None
    """Why the run was stopped, or None when it ended on its own."""
    signal: int | None = None
    """The signal that ended it, if one did."""
    duration: float = 0.0
    """Seconds from sending the code to the end of the run."""
    sandboxed: bool = True
    """False when the code ran with `sandbox="none"`."""

    @property
    def ok(self) -> bool:
        """The code ran to the end and exited with status 0."""
        return self.stopped is None and self.exit_code == 0
