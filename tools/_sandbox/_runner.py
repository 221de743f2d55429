"""`Sandbox`: runs Python snippets in bubblewrap, with a small warm pool of started workers."""

from __future__ import annotations

import logging
import threading
import warnings
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

from agent.errors import DeveloperError, SandboxUnavailableError, ToolExecutionError

from ._launch import Launch, resolve_launch
from ._process import Worker
from ._types import SandboxLimits, SandboxResult

__all__ = ["Sandbox"]

logger = logging.getLogger("tools.code")

UNSANDBOXED_WARNING = (
    "this code ran WITHOUT a sandbox (sandbox: none): it could read and change anything the "
    "agent's user can"
)
"""Said with every unsandboxed run's result, and logged."""
UNSANDBOXED_STARTUP = (
    "code will run WITHOUT a sandbox (sandbox: none): it can read and change anything the "
    "agent's user can"
)
"""Said once, when an unsandboxed `Sandbox` is created."""


class Sandbox:
    """Runs untrusted Python snippets, one fresh interpreter per snippet.

    Creating a `Sandbox` checks that bubblewrap works here (one test run, ~50 ms, cached per
    process). If it does not, the sandbox is still made, so an agent whose other tools work
    (search, math) can be built and run, but it is `available=False`: it warns once
    (`RuntimeWarning`), and every `run()` fails with a `ToolExecutionError` that says how to
    install bubblewrap or opt out with `sandbox: none`. Code never runs unsandboxed unless
    `mode="none"` is asked for; that mode runs code without any isolation (rlimits, the timeouts
    and the output cap still apply) and warns at creation and on every run.

    `pool_size` workers are started ahead of time (on the first run, or by `start()`) and each
    serves one snippet; a warm run costs a few milliseconds instead of ~25 ms. Call `aclose()` (or
    use `async with`) to stop the idle workers; any left at interpreter exit are killed then, and
    bubblewrap's `--die-with-parent` kills them if the runtime dies. (A worker belongs to the
    thread that started it and dies with it: one that did is replaced at the next run.)
    """

    def __init__(
        self,
        *,
        mode: Literal["bwrap", "none"] = "bwrap",
        limits: SandboxLimits | None = None,
        pool_size: int = 2,
        python: str | None = None,
        python_path: Sequence[str] = (),
    ) -> None:
        if mode not in ("bwrap", "none"):
            raise DeveloperError(f"the sandbox mode must be 'bwrap' or 'none', got {mode!r}")
        self.limits = limits or SandboxLimits()
        self.pool_size = max(pool_size, 0)
        self.python_path = tuple(python_path)
        self._launch: Launch | None = None
        self._problem: str | None = None
        try:
            self._launch = resolve_launch(mode, self.limits, python, tuple(python_path))
        except SandboxUnavailableError as exc:
            # Refused when code is run, not now: the agent's other tools must still work.
            self._problem = str(exc)
        self._pool: list[Worker] = []
        self._lock = threading.Lock()  # one Sandbox may serve event loops in several threads
        self._finalizer = weakref.finalize(self, _close_all, self._pool, self._lock)
        if self._problem is not None:
            warnings.warn(
                f"tools.code: the Python sandbox is unavailable, so running code will fail: "
                f"{self._problem}",
                RuntimeWarning,
                stacklevel=2,
            )
        elif not self.sandboxed:
            warnings.warn(f"tools.code: {UNSANDBOXED_STARTUP}", RuntimeWarning, stacklevel=2)

    @property
    def sandboxed(self) -> bool:
        """False when code runs without isolation (`mode="none"`)."""
        return self._launch is None or self._launch.sandboxed

    @property
    def filtered(self) -> bool:
        """True when bubblewrap installs the syscall filter (see `_seccomp`)."""
        return self._launch is not None and self._launch.seccomp

    @property
    def available(self) -> bool:
        """False when no code can run: bubblewrap is missing or cannot start here."""
        return self._launch is not None

    @property
    def problem(self) -> str | None:
        """Why the sandbox is unavailable and what to do (None when it is available)."""
        return self._problem

    @property
    def description(self) -> str:
        """How code is run here, e.g. for `llama-agent check`."""
        if self._launch is None:
            return f"unavailable: {self._problem}"
        return self._launch.description

    def start(self) -> None:
        """Start the warm pool now instead of at the first run (nothing if unavailable)."""
        if self._launch is not None:
            self._refill()

    async def run(self, code: str) -> SandboxResult:
        """Run one snippet and return what it printed and how it ended.

        The snippet's own failures (an exception, a non-zero exit, a limit) are in the result.

        Raises:
            ToolExecutionError: the sandbox is unavailable (the message says how to install
                bubblewrap), the snippet is too large, or no worker could be started.
        """
        if self._problem is not None:
            raise ToolExecutionError(
                "the Python sandbox is unavailable on this machine, so no code can run "
                "(retrying will not help: answer without running code, and tell the user). "
                + self._problem
            )
        data = code.encode("utf-8", "surrogateescape")
        if len(data) > self.limits.code_bytes:
            raise ToolExecutionError(
                f"the code is {len(data)} bytes; the limit is {self.limits.code_bytes}. "
                "Send a shorter program."
            )
        worker = self._take()
        if not self.sandboxed:
            logger.warning("%s", UNSANDBOXED_WARNING)
        return await worker.run(data, self.limits, sent=self._refill_quietly)

    async def aclose(self) -> None:
        """Kill the idle workers. The sandbox stays usable; a later run starts a new pool."""
        _close_all(self._pool, self._lock)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _take(self) -> Worker:
        while True:
            with self._lock:
                worker = self._pool.pop(0) if self._pool else None
            if worker is None:
                return self._spawn()
            if worker.alive:
                return worker
            worker.close()  # died while idle (killed, or its spawning thread ended)

    def _refill_quietly(self) -> None:
        try:
            self._refill()
        except Exception as exc:  # this run goes on; only the next one starts cold
            logger.warning("could not refill the sandbox pool: %s", exc)

    def _refill(self) -> None:
        while True:
            with self._lock:
                if len(self._pool) >= self.pool_size:
                    return
            worker = Worker(self._require_launch())
            with self._lock:
                self._pool.append(worker)

    def _require_launch(self) -> Launch:
        if self._launch is None:  # pragma: no cover - run() refuses first
            raise ToolExecutionError(f"the Python sandbox is unavailable: {self._problem}")
        return self._launch

    def _spawn(self) -> Worker:
        try:
            return Worker(self._require_launch())
        except OSError as exc:
            raise ToolExecutionError(f"could not start the Python sandbox: {exc}") from exc


def _close_all(pool: list[Worker], lock: threading.Lock) -> None:
    with lock:
        workers = list(pool)
        pool.clear()
    for worker in workers:
        worker.close()
