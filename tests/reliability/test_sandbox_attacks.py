"""The sandbox, tighter (issue 14, 8-10): a syscall filter, only the interpreter's files, and a
memory total for the whole run; and a run cut short leaves no process behind.

These run the real bubblewrap: they fail in CI without it and skip elsewhere.
"""

from __future__ import annotations

import errno
import platform
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from agent import Limits
from agent.testing import Script
from llama_agent_tools._sandbox._seccomp import unavailable_reason
from llama_agent_tools.code import Sandbox, SandboxLimits, code_tools
from tests.loop.helpers import by_results, call, running
from tests.tools.conftest import require_sandbox
from tests.tools.procs import descendants, with_marker

pytestmark = pytest.mark.anyio

# System call numbers: the filter is tested through the raw calls, with arguments that would
# succeed or fail otherwise (EFAULT, EINVAL) without it.
SYSCALLS = {
    "x86_64": {"io_uring_setup": 425, "keyctl": 250, "bpf": 321, "ptrace": 101, "mount": 165},
    "aarch64": {"io_uring_setup": 425, "keyctl": 219, "bpf": 280, "ptrace": 117, "mount": 40},
}

LIMITS = SandboxLimits(wall_seconds=8.0, cpu_seconds=2, memory_bytes=256 << 20)


@pytest.fixture
async def box() -> AsyncIterator[Sandbox]:
    require_sandbox()
    async with Sandbox(limits=LIMITS, pool_size=0) as sandbox:
        yield sandbox


async def test_the_kernels_risky_interfaces_answer_eperm(box: Sandbox) -> None:
    assert unavailable_reason() is None, unavailable_reason()
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        pytest.skip(f"no syscall numbers for {platform.machine()} in this test")
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "calls = {\n"
        # io_uring_setup(1, NULL): EFAULT without the filter
        f"    'io_uring_setup': ({numbers['io_uring_setup']}, 1, 0, 0, 0, 0),\n"
        # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1): a key id without it
        f"    'keyctl': ({numbers['keyctl']}, 0, -3, 1, 0, 0),\n"
        # bpf(BPF_MAP_CREATE, NULL, 0): EFAULT or EPERM without it
        f"    'bpf': ({numbers['bpf']}, 0, 0, 0, 0, 0),\n"
        # ptrace(PTRACE_TRACEME): 0 without it
        f"    'ptrace': ({numbers['ptrace']}, 0, 0, 0, 0, 0),\n"
        # mount(NULL, '/work', NULL, MS_REMOUNT, NULL): EPERM anyway (no capability)
        f"    'mount': ({numbers['mount']}, 0, ctypes.c_char_p(b'/work'), 0, 32, 0),\n"
        "}\n"
        "for name, (nr, *args) in calls.items():\n"
        "    ctypes.set_errno(0)\n"
        "    print(name, libc.syscall(nr, *args), ctypes.get_errno())\n"
        "print(open('/proc/self/status').read().split('Seccomp:')[1].split()[0])\n"
    )
    result = await box.run(code)
    assert result.ok, result.stderr
    *lines, mode = result.stdout.split("\n")[:-1]
    assert mode == "2"  # a filter is installed
    assert lines == [f"{name} -1 {errno.EPERM}" for name in SYSCALLS["x86_64"]]


async def test_only_the_interpreters_files_are_there(box: Sandbox) -> None:
    code = (
        "import os, shutil, sys\n"
        "print(os.path.exists('/usr/local'), os.path.exists('/etc'), shutil.which('sh'))\n"
        "print(os.listdir('/usr/bin') == [os.path.basename(sys.executable)])\n"
        "import json, sqlite3, ssl, zoneinfo, decimal, ctypes\n"  # the stdlib and its libraries
        "print(zoneinfo.ZoneInfo('Europe/Paris').key)\n"
    )
    result = await box.run(code)
    assert result.ok, result.stderr
    assert result.stdout.split("\n")[:3] == ["False False None", "True", "Europe/Paris"]


def test_processes_times_memory_stay_within_the_total() -> None:
    assert SandboxLimits().budget() == (512 << 20, 8)  # the defaults fit: 4 GiB
    tight = SandboxLimits(memory_bytes=256 << 20, processes=16, total_memory_bytes=1 << 30)
    assert tight.budget() == (256 << 20, 4)  # fewer processes, never more than the total
    assert SandboxLimits(memory_bytes=8 << 30).budget() == (4 << 30, 1)


async def test_many_children_allocating_stay_within_the_total(box: Sandbox) -> None:
    """The issue's attack: children each allocating what one process may; their number is
    what the total allows (here 1 GiB / 256 MiB = 4 tasks, the snippet's own included)."""
    async with Sandbox(
        limits=SandboxLimits(
            wall_seconds=8.0, memory_bytes=256 << 20, processes=32, total_memory_bytes=1 << 30
        ),
        pool_size=0,
    ) as tight:
        code = (
            "import os, time\n"
            "born = 0\n"
            "for _ in range(12):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError:\n"
            "        break\n"
            "    if pid == 0:\n"
            "        block = bytearray(200 << 20)\n"  # touched: real memory
            "        time.sleep(30)\n"
            "        os._exit(0)\n"
            "    born += 1\n"
            "print(born)\n"
        )
        result = await tight.run(code)
    assert result.ok, result.stderr
    assert int(result.stdout) == 3  # 3 children x 256 MiB + the parent: the 1 GiB total


async def test_a_run_timeout_leaves_no_sandbox_process() -> None:
    """An agent's run stopped by its deadline while the code tool runs: nothing is left."""
    require_sandbox()
    marker = f"deadline-{uuid.uuid4().hex}"
    snippet = (
        "import os, sys\n"
        "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}'])\n"
    )
    script: Script = by_results(lambda r: call("run_python", code=snippet) if not r else "Done.")
    before = set(descendants())
    tools = code_tools(names="custom", limits=SandboxLimits(wall_seconds=30.0), pool_size=0)
    async with running(script, tools=tools, limits=Limits(run_timeout=3)) as (_, agent):
        result = await agent.run("Sleep.")
    assert result.status == "timeout"
    with anyio.fail_after(5):
        while with_marker(marker):  # noqa: ASYNC110 - no event for a process ending
            await anyio.sleep(0.05)
    assert set(descendants()) <= before
    assert with_marker(marker) == []
