"""The sandbox's settings and results."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Literal

from annotated_types import Gt

from agent.toolkit import Size, check_settings

__all__ = ["SandboxLimits", "SandboxResult", "SandboxSettings", "StopReason"]

StopReason = Literal["timeout", "cpu", "memory", "output", "signal"]
"""Why a run did not finish on its own: the wall-clock limit, the CPU-time limit, the memory
limit (an uncaught MemoryError), the output limit, or a signal from elsewhere."""


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """What one run of code may use. Every limit applies to each run separately.

    Memory and file size are per process (rlimits), so the run's total is kept within
    `total_memory_bytes` by the number of processes: at most `total_memory_bytes //
    memory_bytes` processes and threads may run at once (fewer than `processes` when the product
    is over the total; see `budget`). A kernel-enforced total would need a delegated cgroup,
    which most hosts do not give.
    """

    wall_seconds: Annotated[float, Gt(0)] = 10.0
    """Wall-clock time; the whole process tree is killed when it passes."""
    cpu_seconds: Annotated[int, Gt(0)] = 5
    """CPU time per process (RLIMIT_CPU): SIGXCPU, then SIGKILL one second later."""
    memory_bytes: Size = 512 << 20
    """Address space per process (RLIMIT_AS): allocations past it raise MemoryError."""
    processes: Annotated[int, Gt(0)] = 8
    """Processes and threads, counted inside the sandbox (RLIMIT_NPROC)."""
    total_memory_bytes: Size = 4 << 30
    """Address space of all the run's processes together: `processes` x `memory_bytes` is kept
    within it by lowering the number of processes."""
    file_bytes: Size = 10 << 20
    """Largest file a run may write (RLIMIT_FSIZE)."""
    output_bytes: Size = 1 << 20
    """stdout and stderr together; the run is killed when it prints more."""
    tmpfs_bytes: Size = 64 << 20
    """Size of each in-memory filesystem (`/work` and `/tmp`), when bubblewrap supports `--size`."""
    code_bytes: Size = 1 << 20
    """Largest snippet accepted."""

    def budget(self) -> tuple[int, int]:
        """The rlimits that keep the run within `total_memory_bytes`: (RLIMIT_AS, RLIMIT_NPROC),
        their product at most the total."""
        memory = min(self.memory_bytes, self.total_memory_bytes)
        return memory, max(1, min(self.processes, self.total_memory_bytes // memory))

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True, kw_only=True)
class SandboxSettings(SandboxLimits):
    """Where the `code` tool runs Python, and what each snippet may use (a config's top-level
    `sandbox:`). Sizes are bytes or strings such as `512MiB`."""

    mode: Literal["bwrap", "none"] = "bwrap"
    """`bwrap`: a bubblewrap sandbox (no network, read-only system, a scratch dir). `none`: run
    code unsandboxed, as this user, with rlimits only (every run warns). Without bubblewrap,
    code runs only with `none`."""

    @property
    def limits(self) -> SandboxLimits:
        """The limits alone."""
        return SandboxLimits(**{f.name: getattr(self, f.name) for f in fields(SandboxLimits)})


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
