"""How a sandboxed interpreter is started, and the probe that proves it works on this host.

bubblewrap (`--unshare-all --die-with-parent --new-session --clearenv`) gives every run its own
user, pid, network, ipc, uts and cgroup namespaces (uid 65534 inside, no capabilities, no nested
user namespaces), a syscall filter (`_seccomp`), read-only mounts of what the interpreter needs
(its executable, standard library and shared libraries' directories, the time-zone database)
and of `python_path`, fresh `/proc` and `/dev`, and size-limited tmpfs `/work`, `/tmp` and
`/dev/shm`; everything else is read-only. Nothing else of the host is mounted: no `/etc`,
`/home`, `/root`, `/usr/local`, no other programs, no sockets.

When the runtime is root, bwrap itself is started as uid 65534 (through `setpriv`): for root the
kernel ignores RLIMIT_NPROC, so a fork bomb would be contained but not limited (SANDBOX.md §1c).
The interpreter must then be readable by that uid; the runtime's own is tried first, then the
system's `python3`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import SandboxUnavailableError

from ._seccomp import filter_fd, unavailable_reason
from ._types import SandboxLimits

__all__ = ["INSTALL_HINT", "Launch", "forget_probes", "resolve_launch"]

logger = logging.getLogger("tools.code")

NOBODY = 65534
_CHILD_SOURCE = (Path(__file__).parent / "_child.py").read_text(encoding="utf-8")
_PATH = "/usr/local/bin:/usr/bin:/bin"
_PACKAGES = (
    "Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`, "
    "Arch: `pacman -S bubblewrap`, Alpine: `apk add bubblewrap`"
)
_UNSAFE = (
    "or set `sandbox: none` in the config to run code WITHOUT isolation (only for code you trust)"
)
INSTALL_HINT = f"Install bubblewrap ({_PACKAGES}), {_UNSAFE}."


@dataclass(frozen=True, kw_only=True)
class Launch:
    """Everything needed to start one worker, and what it offers."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    wrapper: tuple[str, ...] = ()
    """Runs before bwrap: `setpriv` dropping to uid 65534."""
    user: int | None = None
    """Real uid and gid for `Popen` to switch to (when there is no `setpriv`)."""
    sandboxed: bool = True
    seccomp: bool = False
    """bwrap installs the syscall filter, read from the descriptor given to `command`."""
    description: str = ""

    def command(self, info_fd: int | None = None, seccomp_fd: int | None = None) -> list[str]:
        """The full command; bwrap reports the sandbox's pid on `info_fd` and reads the syscall
        filter from `seccomp_fd` (see `_seccomp.filter_fd`)."""
        info = ["--info-fd", str(info_fd)] if info_fd is not None else []
        if seccomp_fd is not None:
            info += ["--seccomp", str(seccomp_fd)]
        return [*self.wrapper, self.argv[0], *info, *self.argv[1:]]

    def identity(self) -> dict[str, Any]:
        """`Popen` arguments for the uid switch. `setpriv` is preferred: a Popen that switches
        uid cannot use vfork, and copying a large runtime's page tables costs milliseconds."""
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}


def _child_argv(
    python: str, limits: SandboxLimits, paths: Sequence[str], *, count: bool
) -> list[str]:
    memory, processes = limits.budget()
    numbers = (limits.cpu_seconds, memory, processes, limits.file_bytes)
    return [python, "-I", "-S", "-c", _CHILD_SOURCE, *map(str, numbers), str(int(count)), *paths]


@functools.cache
def _bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bwrap knows (`--size` and `--disable-userns` are recent)."""
    try:
        done = subprocess.run(
            [bwrap, "--help"], capture_output=True, timeout=10, check=False, env={"PATH": _PATH}
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", done.stdout.decode(errors="replace")))


def _root_links() -> list[str]:
    """`/bin`, `/lib*`, `/sbin` as the host's symlinks into /usr (where they are directories,
    only what the interpreter needs of them is mounted, by `_interpreter_mounts`)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
    return args


_ASK_PATHS = (
    "import sys, sysconfig\n"
    "v = sysconfig.get_config_var\n"
    "for p in (sysconfig.get_paths()['stdlib'], sysconfig.get_paths()['platstdlib'],"
    " v('DESTSHARED') or '', v('LIBDIR') if v('Py_ENABLE_SHARED') else ''): print(p)"
)


@functools.cache
def _interpreter_mounts(python: str) -> tuple[str, ...]:
    """What the interpreter needs, and nothing else of the host: its executable, its standard
    library, the directories of the shared libraries it and its extension modules load (found
    with `ldd`), and the time-zone database. Not `/usr/local`, not the host's other programs."""
    found: list[str] = [python]
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", _ASK_PATHS],
            capture_output=True,
            timeout=30,
            check=True,
            env={"PATH": _PATH},
        )
        stdlib = [p for p in done.stdout.decode().splitlines() if p]
    except (OSError, subprocess.SubprocessError):
        stdlib = []
    found += stdlib
    modules = [str(m) for d in stdlib for m in sorted(Path(d).glob("*.so")) if m.is_file()]
    found += _library_dirs([python, *modules])
    found.append("/usr/share/zoneinfo")
    paths: list[str] = []
    for path in sorted({os.path.realpath(p) for p in found if os.path.exists(p)}):
        if not any(path.startswith(kept + "/") for kept in paths):  # inside one already mounted
            paths.append(path)
    return tuple(paths)


def _library_dirs(files: Sequence[str]) -> list[str]:
    """The directories of the shared libraries `files` load (the loader's own included), with
    the directory each is named through (`/lib64` for `/lib64/ld-linux-x86-64.so.2`, a symlink
    into the multiarch directory). Without `ldd`: the usual library directories."""
    ldd = shutil.which("ldd", path=_PATH)
    output = ""
    if ldd is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            output = subprocess.run(
                [ldd, *files], capture_output=True, timeout=60, check=False, env={"PATH": _PATH}
            ).stdout.decode(errors="replace")
    libraries = set(re.findall(r"(?:=> |^\s+)(/\S+) \(0x", output, flags=re.MULTILINE))
    if not libraries:
        logger.warning("ldd found no libraries of %s: mounting the usual library dirs", files[0])
        return ["/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64"]
    dirs: set[str] = set()
    for library in libraries:
        dirs.add(os.path.realpath(os.path.dirname(library)))
        dirs.add(os.path.dirname(os.path.realpath(library)))
    return sorted(dirs)


def _bwrap_argv(bwrap: str, python: str, limits: SandboxLimits, paths: Sequence[str]) -> list[str]:
    known = _bwrap_options(bwrap)
    size = ["--size", str(limits.tmpfs_bytes)] if "--size" in known else []
    # --unshare-user explicitly: --unshare-all only *tries* it, and --disable-userns needs it.
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
    # The snippet's interpreter is the namespace's pid 1, without bwrap's reaper: bwrap then
    # exits only after the kernel has killed everything in the namespace. (With the reaper,
    # bwrap exits when the main process does, and the reaper is left to the host's init.)
    argv.append("--as-pid-1")
    argv += ["--clearenv", "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    if "--disable-userns" in known:  # no nested user namespaces: less kernel attack surface
        argv.append("--disable-userns")
    argv += [*_root_links(), "--proc", "/proc", "--dev", "/dev"]
    for scratch in ("/tmp", "/work", "/dev/shm"):  # /dev/shm: multiprocessing's semaphores
        argv += [*size, "--tmpfs", scratch]
    for path in (*_interpreter_mounts(python), *paths):  # after the scratch dirs (they hide)
        argv += ["--ro-bind", path, path]
    # bwrap's root and /dev are tmpfs without a size limit: read-only, or writes there could
    # fill the host's memory. The mounts inside them stay as they are.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/work"]
    argv += ["--hostname", "sandbox"]
    for name, value in (("HOME", "/work"), ("PATH", _PATH), ("LANG", "C.UTF-8")):
        argv += ["--setenv", name, value]
    # Each sandbox has its own user namespace, where RLIMIT_NPROC counts only its own processes.
    return [*argv, "--", *_child_argv(python, limits, paths, count=False)]


def _candidates(python: str | None) -> list[str]:
    if python is not None:
        found = shutil.which(python)
        if found is None:
            raise SandboxUnavailableError(f"the sandbox interpreter {python!r} does not exist")
        return [os.path.realpath(found)]
    seen: list[str] = []
    # The runtime's own interpreter first (same version); then system ones, which uid 65534 can
    # read even when the runtime's lives in a private home directory (pyenv under /root).
    own = getattr(sys, "_base_executable", sys.executable)
    for path in (own, shutil.which("python3"), "/usr/bin/python3"):
        if path and os.path.exists(path) and (real := os.path.realpath(path)) not in seen:
            seen.append(real)
    return seen


def _open_to_others(python: str) -> bool:
    """Whether uid 65534 can reach the interpreter (pyenv under a 0700 /root cannot)."""
    path = Path(python)
    try:
        if path.stat().st_mode & 0o005 != 0o005:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in path.parents)
    except OSError:
        return False


def _probe(launch: Launch) -> str:
    """Run `print(6 * 7)` the way a real run goes; return "" on success or what went wrong."""
    try:
        with filter_fd() if launch.seccomp else contextlib.nullcontext() as seccomp:
            done = subprocess.run(
                launch.command(seccomp_fd=seccomp),
                input=b"print(6 * 7)",
                capture_output=True,
                timeout=30,
                check=False,
                env=launch.env,
                cwd="/",
                start_new_session=True,
                pass_fds=() if seccomp is None else (seccomp,),
                **launch.identity(),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode == 0 and done.stdout == b"42\n":
        return ""
    return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"


def _unsandboxed(python: str | None, limits: SandboxLimits, paths: Sequence[str]) -> Launch:
    interpreter = _candidates(python)[0] if python else sys.executable
    # Without a user namespace RLIMIT_NPROC counts every process of this uid: the child adds
    # the ones that already exist (root is exempt anyway).
    count = os.getuid() != 0
    return Launch(
        argv=tuple(_child_argv(interpreter, limits, paths, count=count)),
        env={"PATH": _PATH, "LANG": "C.UTF-8"},
        sandboxed=False,
        description=f"NO SANDBOX (sandbox: none), {interpreter}",
    )


def resolve_launch(
    mode: str, limits: SandboxLimits, python: str | None, paths: tuple[str, ...]
) -> Launch:
    """Find a way to start workers that works here, or say why there is none.

    The answer, failure included, is cached per process: the probe costs ~50 ms, and a host
    that cannot run bubblewrap now will not be able to a moment later. `forget_probes()`
    clears it (tests; a program that installed bubblewrap meanwhile).

    Raises:
        SandboxUnavailableError: bubblewrap is missing or cannot create namespaces here; the
            message says how to install it, or how to run without it.
    """
    found = _resolve_cached(mode, limits, python, paths)
    if isinstance(found, str):
        raise SandboxUnavailableError(found)
    return found


def forget_probes() -> None:
    """Forget what `resolve_launch` found, so the next sandbox probes the host again."""
    _resolve_cached.cache_clear()


@functools.cache
def _resolve_cached(
    mode: str, limits: SandboxLimits, python: str | None, paths: tuple[str, ...]
) -> Launch | str:
    try:
        return _resolve(mode, limits, python, paths)
    except SandboxUnavailableError as exc:
        return str(exc)


def _resolve(
    mode: str, limits: SandboxLimits, python: str | None, paths: tuple[str, ...]
) -> Launch:
    if mode == "none":
        return _unsandboxed(python, limits, paths)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(f"bubblewrap (bwrap) is not installed. {INSTALL_HINT}")
    attempts: list[tuple[int | None, str]] = []
    if os.getuid() == 0:
        attempts += [(NOBODY, p) for p in _candidates(python) if _open_to_others(p)]
    attempts += [(None, p) for p in _candidates(python)[:1]]
    problems: list[str] = []
    setpriv = shutil.which("setpriv")
    unfiltered = unavailable_reason()
    if unfiltered is not None:
        logger.warning("the code sandbox runs WITHOUT a syscall filter: %s", unfiltered)
    for user, interpreter in attempts:
        wrapper: tuple[str, ...] = ()
        if user is not None and setpriv is not None:
            wrapper = (setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups")
        launch = Launch(
            argv=tuple(_bwrap_argv(bwrap, interpreter, limits, paths)),
            env={"PATH": _PATH},  # no secrets: the sandbox's pid 1 starts with this environment
            wrapper=wrapper,
            user=None if wrapper else user,
            seccomp=unfiltered is None,
            description=_describe(bwrap, interpreter, user, filtered=unfiltered is None),
        )
        problem = _probe(launch)
        if not problem:
            if problems:
                logger.warning(
                    "the code sandbox runs bwrap as root, where the process limit does not "
                    "apply, because it failed as uid %d: %s",
                    NOBODY,
                    "; ".join(problems),
                )
            return launch
        problems.append(f"{interpreter} as uid {os.getuid() if user is None else user}: {problem}")
    raise SandboxUnavailableError(
        "bubblewrap cannot start a sandbox here: "
        + "; ".join(problems)
        + ". Namespaces may be blocked (Docker's default seccomp profile, "
        "kernel.apparmor_restrict_unprivileged_userns=1 on Ubuntu 24.04, "
        "user.max_user_namespaces=0): allow unprivileged user namespaces, or install a "
        f"working bubblewrap ({_PACKAGES}), {_UNSAFE}."
    )


def _describe(bwrap: str, python: str, user: int | None, *, filtered: bool) -> str:
    unfiltered = "" if filtered else ", NO syscall filter"
    if user is None and os.getuid() == 0:
        return f"bubblewrap ({bwrap}) as root, {python}: process count NOT limited{unfiltered}"
    who = f"uid {user}" if user is not None else f"uid {os.getuid()}"
    return f"bubblewrap ({bwrap}) started as {who}, {python}{unfiltered}"
