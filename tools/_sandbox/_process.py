"""One worker: a started interpreter waiting for code on stdin, and the run that drives it.

Workers are `subprocess.Popen` objects read through `anyio.wait_readable`, not anyio processes:
those belong to the event loop that made them, and a warm pool must serve whichever loop calls
next. Every worker is its own session and process group.

A run is over only when every process of it is gone. Without bubblewrap that is the process
group (a child that calls `setsid` escapes it: a documented gap of `sandbox: none`). With
bubblewrap it is the sandbox's pid namespace, whose pid 1 is the snippet's interpreter: when it
ends, the kernel kills everything else in the namespace, and bwrap exits after that. The pid 1 is
watched too, and killed directly, so that nothing depends on bwrap's own timing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

import anyio

from ._child import CPU_EXIT, MEMORY_EXIT
from ._launch import Launch
from ._pids import InitPid, PidWatch
from ._seccomp import filter_fd
from ._types import SandboxLimits, SandboxResult, StopReason

__all__ = ["Worker"]

_CHUNK = 1 << 16
_DRAIN_GRACE = 0.5  # after the code exits, how long to wait for pipes held by escaped children
_REAP_LIMIT = 5.0


class _Output:
    """stdout and stderr of one run, with the shared byte budget."""

    def __init__(self, cap: int) -> None:
        self.streams = (bytearray(), bytearray())
        self.cap = cap
        self.over = False
        self.open = 2
        self.closed = anyio.Event()

    def add(self, index: int, chunk: bytes) -> bool:
        """Keep what fits; return False once the budget is spent."""
        room = self.cap - len(self.streams[0]) - len(self.streams[1])
        self.streams[index].extend(chunk[: max(room, 0)])
        self.over = self.over or len(chunk) > room
        return not self.over

    def done(self) -> None:
        self.open -= 1
        if self.open == 0:
            self.closed.set()


class Worker:
    """A started interpreter (sandboxed or not) that will run exactly one snippet."""

    def __init__(self, launch: Launch) -> None:
        self.sandboxed = launch.sandboxed
        # Without bubblewrap each run still gets a fresh private working directory.
        self.workdir = None if launch.sandboxed else tempfile.mkdtemp(prefix="llama-agent-run-")
        env = dict(launch.env)
        if self.workdir is not None:
            env["HOME"] = self.workdir
        argv = list(launch.argv)
        keep: tuple[int, ...] = ()
        info_read = info_write = -1
        seccomp = contextlib.ExitStack()
        if launch.sandboxed:
            info_read, info_write = os.pipe()
            keep = (info_write,)
            seccomp_fd = seccomp.enter_context(filter_fd()) if launch.seccomp else None
            if seccomp_fd is not None:
                keep += (seccomp_fd,)
            argv = launch.command(info_write, seccomp_fd)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                cwd=self.workdir or "/",
                env=env,
                close_fds=True,
                pass_fds=keep,
                start_new_session=True,
                **launch.identity(),
            )
        except BaseException:
            if info_read >= 0:
                os.close(info_read)
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            seccomp.close()  # bwrap has its copy
            if info_write >= 0:
                os.close(info_write)
        self._init = InitPid(info_read) if info_read >= 0 else None
        self._init_watch: PidWatch | None = None
        self._watch = PidWatch(self.proc.pid)

    @property
    def alive(self) -> bool:
        """Still waiting for code (a worker that died in the pool is useless)."""
        return self.proc.returncode is None and not self._watch.gone()

    async def run(
        self, code: bytes, limits: SandboxLimits, *, sent: Callable[[], None] | None = None
    ) -> SandboxResult:
        """Send the code, collect the output under every limit, then kill and reap everything.

        `sent` is called once the code is on its way: work to overlap with the run (the pool
        starts the next worker then, while this one runs on another core).
        """
        output = _Output(limits.output_bytes)
        started = time.monotonic()
        stopped: StopReason | None = None
        try:
            with anyio.move_on_after(limits.wall_seconds) as deadline:
                await self._find_init()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._feed, code, sent)
                    for index in (0, 1):
                        tg.start_soon(self._drain, index, output)
                    await self._wait_exit()
                    self._kill_group()  # leftovers in the group (none without bubblewrap)
                    with anyio.move_on_after(_DRAIN_GRACE):
                        await output.closed.wait()
                    tg.cancel_scope.cancel()
            if output.over:
                stopped = "output"
            elif deadline.cancelled_caught:
                stopped = "timeout"
        finally:
            with anyio.CancelScope(shield=True):
                await self.reap()
        return self._result(output, stopped, time.monotonic() - started)

    def _result(
        self, output: _Output, stopped: StopReason | None, duration: float
    ) -> SandboxResult:
        status = self.proc.returncode
        signum: int | None = None
        if status is not None and status < 0:
            signum = -status
        elif self.sandboxed and status is not None and status > 128:
            signum = status - 128  # bwrap reports a signal like a shell: 128 + number
        if stopped is None and (signum == signal.SIGXCPU or status == CPU_EXIT):
            stopped = "cpu"
        elif stopped is None and signum is not None:
            stopped = "signal"
        elif stopped is None and status == MEMORY_EXIT:
            stopped = "memory"
        out, err = (s.decode("utf-8", "replace") for s in output.streams)
        return SandboxResult(
            stdout=out,
            stderr=err,
            exit_code=None if signum is not None or stopped in ("timeout", "output") else status,
            stopped=stopped,
            signal=signum,
            duration=duration,
            sandboxed=self.sandboxed,
        )

    async def _find_init(self) -> None:
        """Learn the sandbox init's pid (bwrap reports it once the sandbox is set up)."""
        if self._init is not None and self._init_watch is None:
            pid = await self._init.wait()
            if pid is not None:
                self._init_watch = PidWatch(pid)

    async def _feed(self, code: bytes, sent: Callable[[], None] | None) -> None:
        assert self.proc.stdin is not None
        fd, view = self.proc.stdin.fileno(), memoryview(code)
        os.set_blocking(fd, False)
        try:
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await anyio.wait_writable(fd)
        except BrokenPipeError:
            pass  # the worker died; its exit status says why
        finally:
            self.proc.stdin.close()
        if sent is not None:
            sent()

    async def _drain(self, index: int, output: _Output) -> None:
        pipe = self.proc.stdout if index == 0 else self.proc.stderr
        assert pipe is not None
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        try:
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    await anyio.wait_readable(fd)
                    continue
                if not chunk:
                    return
                if not output.add(index, chunk):
                    self._kill()  # printing more than the cap: stop the run now
                    return
        finally:
            output.done()

    async def _wait_exit(self) -> None:
        """Until bwrap (or the interpreter) and the whole sandbox are gone."""
        await self._watch.wait()
        if self._init_watch is not None:
            await self._init_watch.wait()  # killed by --die-with-parent, after its namespace

    def _kill(self) -> None:
        """SIGKILL the run. In bubblewrap: the sandbox's pid 1 (the kernel then kills its whole
        namespace, and bwrap reaps it and exits; killing bwrap first would leave the pid 1 to the
        host's init). Otherwise, or before bwrap has set the sandbox up: the process group."""
        if self._init is not None and self._init_watch is None and self._init.poll():
            self._init_watch = PidWatch(self._init.pid) if self._init.pid else None
        if self._init_watch is not None and not self._init_watch.gone():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._init_watch.pid, signal.SIGKILL)
            return
        self._kill_group()

    def _kill_group(self) -> None:
        if self.proc.returncode is not None:
            return  # reaped: the pid, and so the group id, may already belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        """Kill whatever still runs, wait for all of it to end, and release everything."""
        self._kill()
        with anyio.move_on_after(_REAP_LIMIT):
            await self._wait_exit()
        self.close()

    def close(self) -> None:
        """Synchronous kill, wait and release, for pool shutdown and finalizers."""
        self._kill()
        try:
            self.proc.wait(timeout=_REAP_LIMIT)
        except subprocess.TimeoutExpired:  # bwrap did not follow its sandbox out
            self._kill_group()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_REAP_LIMIT)
        if self._init_watch is not None:
            self._init_watch.wait_sync(_REAP_LIMIT)
            self._init_watch.close()
        if self._init is not None:
            self._init.close()
        self._watch.close()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
