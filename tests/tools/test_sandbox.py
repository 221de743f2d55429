"""The sandbox under attack: each attack from issue 6 is stopped, and the mechanism is asserted.

These run the real bubblewrap: they fail in CI without it and skip elsewhere.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from llama_agent_tools._sandbox._child import CPU_EXIT
from llama_agent_tools.code import Sandbox, SandboxLimits, SandboxResult
from tests.tools.procs import descendants, with_marker

pytestmark = pytest.mark.usefixtures("bwrap")

LIMITS = SandboxLimits(
    wall_seconds=8.0,
    cpu_seconds=1,
    memory_bytes=512 << 20,
    processes=16,
    file_bytes=1 << 20,
    output_bytes=256 << 10,
    tmpfs_bytes=8 << 20,
)


@pytest.fixture(scope="module")
def box(bwrap: None) -> Iterator[Sandbox]:
    """A sandbox with a warm pool, shared by the module (workers serve any event loop)."""
    sandbox = Sandbox(limits=LIMITS, pool_size=2)
    yield sandbox
    anyio.run(sandbox.aclose)


@pytest.fixture
async def cold(bwrap: None) -> AsyncIterator[Sandbox]:
    """No warm pool: after a run, nothing of it may be left among this process's children."""
    async with Sandbox(limits=LIMITS, pool_size=0) as sandbox:
        yield sandbox


@pytest.fixture
def children() -> set[int]:
    """This process's children before the test: the shared pool's idle workers."""
    return set(descendants())


async def run(sandbox: Sandbox, code: str) -> SandboxResult:
    return await sandbox.run(code)


# --- ordinary runs --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_output_exit_status_and_final_expression(box: Sandbox) -> None:
    result = await run(box, "import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7")
    assert (result.stdout, result.stderr, result.exit_code, result.stopped) == (
        "out\n42\n",
        "err\n",
        0,
        None,
    )
    assert result.ok
    assert result.sandboxed

    result = await run(box, "import sys; sys.exit(3)")
    assert (result.exit_code, result.stopped, result.ok) == (3, None, False)


@pytest.mark.anyio
async def test_a_traceback_shows_the_snippet_not_the_bootstrap(box: Sandbox) -> None:
    result = await run(box, "x = 1\ny = x / 0\n")
    assert result.exit_code == 1
    assert 'File "<code>", line 2, in <module>' in result.stderr
    assert "y = x / 0" in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "_child" not in result.stderr


@pytest.mark.anyio
async def test_stdin_is_empty(box: Sandbox) -> None:
    result = await run(box, "try:\n    input()\nexcept EOFError:\n    print('eof')")
    assert result.stdout == "eof\n"


@pytest.mark.anyio
async def test_every_run_starts_from_scratch(box: Sandbox) -> None:
    await run(box, "open('/work/state', 'w').write('1'); open('/tmp/state', 'w').write('1')")
    result = await run(box, "import os; print(os.path.exists('/work/state'), os.listdir('/tmp'))")
    assert result.stdout == "False []\n"


@pytest.mark.anyio
async def test_a_worker_that_died_in_the_pool_is_replaced(box: Sandbox) -> None:
    await run(box, "pass")  # the pool is full now
    for worker in list(box._pool):
        assert worker._init is not None
        pid = await worker._init.wait()  # the interpreter, as the host sees it
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
        # bwrap follows it out: dead, not yet reaped.
        os.waitid(os.P_PID, worker.proc.pid, os.WEXITED | os.WNOWAIT)  # noqa: ASYNC222
    result = await run(box, "print('fresh')")
    assert result.stdout == "fresh\n"


# --- attacks --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_infinite_loop_is_stopped_by_the_cpu_limit(box: Sandbox) -> None:
    result = await run(box, "while True:\n    pass")
    assert result.stopped == "cpu"
    assert result.exit_code == CPU_EXIT  # its SIGXCPU handler, not the SIGKILL a second later
    assert result.duration < LIMITS.wall_seconds  # the CPU limit, not the wall clock


@pytest.mark.anyio
async def test_sleeping_forever_is_stopped_by_the_wall_clock(
    bwrap: None, children: set[int]
) -> None:
    limits = dataclasses.replace(LIMITS, wall_seconds=1.0)
    async with Sandbox(limits=limits, pool_size=0) as sandbox:
        result = await run(sandbox, "import time\nprint('started')\ntime.sleep(60)")
    assert result.stopped == "timeout"
    assert result.exit_code is None
    assert result.stdout == "started\n"  # printed before the kill, not lost in a buffer
    assert descendants(besides=children) == {}


@pytest.mark.anyio
async def test_fork_bomb_is_stopped_by_the_process_limit(cold: Sandbox, children: set[int]) -> None:
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print(n, exc.errno)\n"
    )
    result = await run(cold, code)
    forks, error = map(int, result.stdout.split())
    assert error == errno.EAGAIN
    assert 0 < forks < LIMITS.processes
    assert result.ok
    assert descendants(besides=children) == {}  # the sleeping children died with the sandbox


@pytest.mark.anyio
@pytest.mark.parametrize("allocation", ["bytearray(10 * 2**30)", "'a' * 10**10"])
async def test_a_10_gb_allocation_hits_the_memory_limit(box: Sandbox, allocation: str) -> None:
    result = await run(box, allocation)
    assert result.stopped == "memory"
    assert result.stderr.rstrip().endswith("MemoryError")


@pytest.mark.anyio
async def test_the_memory_limit_cannot_be_raised(box: Sandbox) -> None:
    code = (
        "import resource\n"
        "try:\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    result = await run(box, code)
    assert result.stdout == "not allowed to raise maximum limit\n"


@pytest.mark.anyio
async def test_nothing_outside_the_scratch_dirs_can_be_written(
    box: Sandbox, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    targets = [
        tmp_path / "owned",
        Path("/usr/owned"),
        Path("/etc/owned"),
        Path("/root/owned"),
        Path("/owned"),
        Path(f"/tmp/owned-{marker}"),
        Path(f"/dev/owned-{marker}"),
    ]
    code = (
        "for path in " + repr([str(t) for t in targets]) + ":\n"
        "    try:\n"
        "        open(path, 'w').write('owned')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
    )
    result = await run(box, code)
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        f"refused {tmp_path / 'owned'} {errno.ENOENT}",  # the host's /tmp is not mounted
        f"refused /usr/owned {errno.EROFS}",
        f"refused /etc/owned {errno.ENOENT}",
        f"refused /root/owned {errno.ENOENT}",
        f"refused /owned {errno.EROFS}",
    ]
    assert lines[5] == f"wrote /tmp/owned-{marker}"  # the sandbox's own in-memory /tmp
    assert lines[6] == f"refused /dev/owned-{marker} {errno.EROFS}"
    for target in targets:
        assert not target.exists()


@pytest.mark.anyio
async def test_file_size_and_scratch_space_are_limited(box: Sandbox) -> None:
    code = (
        "import errno\n"
        "try:\n"
        "    open('/work/big', 'wb').write(b'x' * (2 << 20))\n"
        "except OSError as exc:\n"
        "    print('file', errno.errorcode[exc.errno])\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        open(f'/tmp/f{n}', 'wb').write(b'x' * (1 << 20))\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('tmp', n, errno.errorcode[exc.errno])\n"
    )
    result = await run(box, code)
    first, second = result.stdout.splitlines()
    assert first == "file EFBIG"
    files, code_name = second.split()[1:]
    assert code_name == "ENOSPC"
    assert int(files) <= LIMITS.tmpfs_bytes >> 20


@pytest.mark.anyio
async def test_the_hosts_etc_passwd_is_not_there(box: Sandbox) -> None:
    code = (
        "import os\n"
        "for path in ['/etc/passwd', '/proc/1/root/etc/passwd', '/proc/self/root/etc/passwd']:\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as exc:\n"
        "        print(path, exc.errno)\n"
        "print(sorted(os.listdir('/')))\n"
    )
    result = await run(box, code)
    host_first_line = (await anyio.Path("/etc/passwd").read_text()).splitlines()[0]
    assert host_first_line not in result.stdout
    assert result.stdout.splitlines() == [
        f"/etc/passwd {errno.ENOENT}",
        f"/proc/1/root/etc/passwd {errno.ENOENT}",
        f"/proc/self/root/etc/passwd {errno.ENOENT}",
        str(sorted(["bin", "dev", "lib", "lib64", "proc", "sbin", "tmp", "usr", "work"])),
    ]


@pytest.mark.anyio
async def test_the_runtimes_environment_is_not_visible(
    bwrap: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("LLAMA_AGENT_TEST_SECRET", secret)
    code = (
        "import glob, os\n"
        "print(sorted(os.environ))\n"
        "paths = ['/proc/self/environ', f'/proc/{os.getppid()}/environ']\n"
        "for path in paths + glob.glob('/proc/[0-9]*/environ'):\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read())\n"
        "    except OSError as exc:\n"
        "        print(path, exc.errno)\n"
    )
    async with Sandbox(limits=LIMITS, pool_size=0) as sandbox:  # started after the secret
        result = await run(sandbox, code)
    assert result.ok
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'PWD']"
    # It could read environments (its own, as pid 1); its parent has no pid in its namespace.
    assert "/proc/1/environ b'HOME=/work\\x00" in result.stdout
    assert "/proc/0/environ 2" in result.stdout
    assert secret not in result.stdout + result.stderr


@pytest.mark.anyio
async def test_a_server_on_the_hosts_loopback_is_unreachable(box: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__)\n"
        )
        result = await run(box, code)
        assert result.stdout == "ConnectionRefusedError\n"  # its own, empty loopback
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody knocked
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            server.accept()  # while the server was reachable from here all along


@pytest.mark.anyio
async def test_100_mb_of_output_is_cut_at_the_output_limit(box: Sandbox) -> None:
    result = await run(box, "import sys\nsys.stdout.write('x' * 10**8)")
    assert result.stopped == "output"
    assert len(result.stdout) + len(result.stderr) == LIMITS.output_bytes
    assert result.exit_code is None


@pytest.mark.anyio
async def test_killing_the_parent_or_everything_else_changes_nothing(box: Sandbox) -> None:
    code = (
        "import os, signal\n"
        "print('parent', os.getppid())\n"
        "try:\n"
        f"    os.kill({os.getpid()}, 0)\n"
        "    print('runtime visible')\n"
        "except ProcessLookupError:\n"
        "    print('runtime not visible')\n"
        "try:\n"
        "    os.kill(-1, signal.SIGKILL)  # every process it may signal but itself and pid 1\n"
        "except ProcessLookupError:\n"
        "    print('nothing else to kill')\n"
        "print('still here')\n"
    )
    result = await run(box, code)
    # Its parent is outside its pid namespace, so it has no pid to kill.
    assert result.stdout == "parent 0\nruntime not visible\nnothing else to kill\nstill here\n"
    assert result.ok


@pytest.mark.anyio
async def test_a_detached_child_does_not_outlive_the_run(cold: Sandbox, children: set[int]) -> None:
    marker = f"detached-{uuid.uuid4().hex}"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for fd in (0, 1, 2):\n"
        "            os.close(fd)\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}'])\n"
        "    os._exit(0)\n"
        "time.sleep(2)\n"
        "print('leaving')\n"
    )
    seen: list[int] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while not seen:
                seen.extend(with_marker(marker))
                await anyio.sleep(0.05)

        tg.start_soon(watch)
        result = await run(cold, code)
        tg.cancel_scope.cancel()
    assert seen, "the detached child never started, so the test proves nothing"
    assert result.stdout == "leaving\n"
    assert with_marker(marker) == []
    assert descendants(besides=children) == {}


@pytest.mark.anyio
async def test_a_cancelled_run_leaves_no_process(cold: Sandbox, children: set[int]) -> None:
    marker = f"cancelled-{uuid.uuid4().hex}"
    code = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}'])\n"
    )
    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, cold, code)
            while not with_marker(marker):  # noqa: ASYNC110  (no event for a process starting)
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught, "the snippet never started"
    assert with_marker(marker) == []
    assert descendants(besides=children) == {}


@pytest.mark.anyio
async def test_aclose_stops_the_warm_pool(bwrap: None, children: set[int]) -> None:
    sandbox = Sandbox(limits=LIMITS, pool_size=2)
    await sandbox.run("pass")
    assert len(sandbox._pool) == 2
    assert descendants(besides=children) != {}
    await sandbox.aclose()
    assert descendants(besides=children) == {}


@pytest.mark.anyio
async def test_catching_sigxcpu_does_not_escape_the_cpu_limit(box: Sandbox) -> None:
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass"
    result = await run(box, code)
    assert (result.stopped, result.signal) == ("signal", signal.SIGKILL)  # the hard limit
    assert result.duration < LIMITS.wall_seconds
