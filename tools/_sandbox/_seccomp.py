"""The syscall filter bubblewrap installs in every sandbox (`--seccomp FD`).

Namespaces, the uid switch and the dropped capabilities already refuse most of what is listed
here; the filter takes away the kernel interfaces themselves, where most privilege escalations
of recent years were found, and which Python code never needs: io_uring, BPF, perf events,
userfaultfd, keyrings, kexec and modules, the mount family, namespace changes, tracing other
processes and reading their memory, clocks and swap. Each answers EPERM (code that probes for
a feature falls back, as it would in a container); everything else is allowed. Calls of another
architecture's ABI (32-bit `int 0x80` on x86-64) kill the process: libseccomp's default.

The filter is built once per process with libseccomp's Python bindings: its own `seccomp`
module (Debian's python3-seccomp, for the system interpreter) or `pyseccomp` (the same API
through ctypes, from PyPI), either on top of the libseccomp shared library. Without them the
sandbox runs without a filter and says so (`unavailable_reason`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["DENIED", "filter_fd", "unavailable_reason"]

logger = logging.getLogger("tools.code")

DENIED = (
    # io_uring: its own path around every other check, the source of many kernel exploits
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # kernel programs, performance counters, page-fault handling in user space
    "bpf",
    "perf_event_open",
    "userfaultfd",
    # keyrings
    "keyctl",
    "add_key",
    "request_key",
    # replacing or extending the kernel
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    # the mount family, root changes, namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    # other processes: tracing, their memory, their file descriptors
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    # host-wide state
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "vhangup",
    "uselib",
    "nfsservctl",
)
"""System calls that fail with EPERM inside the sandbox (those this architecture lacks skipped)."""


def _bindings() -> Any:
    """libseccomp's Python module (the official one first), or None."""
    for name in ("seccomp", "pyseccomp"):
        try:
            return importlib.import_module(name)
        except (ImportError, OSError):  # pyseccomp raises OSError without the shared library
            continue
    return None


@functools.cache
def _program() -> bytes | str:
    """The filter as BPF, or why there is none."""
    seccomp = _bindings()
    if seccomp is None:
        return (
            "libseccomp's Python bindings are missing: `pip install pyseccomp` (and the "
            "libseccomp2 package), or python3-seccomp for the system interpreter"
        )
    try:
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in DENIED:
            with contextlib.suppress(ValueError, OSError, RuntimeError):  # not on this arch
                rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        with tempfile.TemporaryFile() as out:
            rules.export_bpf(out)
            out.seek(0)
            return out.read()
    except (OSError, RuntimeError, ValueError) as exc:
        return f"libseccomp could not build the filter: {exc}"


def unavailable_reason() -> str | None:
    """Why sandboxes run without the syscall filter here, or None when they have it."""
    program = _program()
    return program if isinstance(program, str) else None


@contextlib.contextmanager
def filter_fd() -> Iterator[int | None]:
    """A readable descriptor holding the filter, for bwrap's `--seccomp` (None: no filter).

    A pipe: the program is a few KiB, well under a pipe's buffer, and bwrap reads it to the end.
    """
    program = _program()
    if isinstance(program, str):
        yield None
        return
    read, write = os.pipe()
    try:
        os.write(write, program)
        os.close(write)
        write = -1
        yield read
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
