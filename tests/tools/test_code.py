"""The code tools: what the model sees, the missing-bubblewrap refusal, and `sandbox: none`."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent import Tool
from agent.errors import DeveloperError, SandboxUnavailableError, ToolExecutionError
from llama_agent_tools import BUILTIN_TOOLSETS
from llama_agent_tools._sandbox import _launch
from llama_agent_tools.code import Sandbox, SandboxLimits, SandboxResult, code_tools, format_result

LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=2, output_bytes=64 << 10)


def result(**fields: object) -> SandboxResult:
    base: dict[str, object] = {"stdout": "", "stderr": "", "exit_code": 0}
    return SandboxResult(**(base | fields))  # type: ignore[arg-type]


# --- the text the model sees ----------------------------------------------------------------


def test_format_follows_metas_code_interpreter() -> None:
    assert format_result(result(stdout="42\n"), LIMITS) == "completed\n[stdout]\n42\n[/stdout]"
    assert format_result(result(), LIMITS) == "completed"
    text = format_result(result(stdout="a\n", stderr="Traceback...\n", exit_code=1), LIMITS)
    assert text == (
        "completed with exit status 1\n[stdout]\na\n[/stdout]\n[stderr]\nTraceback...\n[/stderr]"
    )


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"stopped": "timeout", "exit_code": None}, "the wall-clock limit of 5 s was reached"),
        ({"stopped": "cpu", "exit_code": 121}, "the CPU-time limit of 2 s was reached"),
        ({"stopped": "memory", "exit_code": 120}, "out of memory (limit 512 MiB per process)"),
        ({"stopped": "output", "exit_code": None}, "printed more than 64 KiB"),
        ({"stopped": "signal", "exit_code": None, "signal": 11}, "killed by SIGSEGV"),
        ({"stopped": "signal", "exit_code": None, "signal": 9}, "CPU-time hard limit"),
    ],
)
def test_format_says_why_a_run_was_stopped(fields: dict[str, object], status: str) -> None:
    first_line = format_result(result(**fields), LIMITS).split("\n")[0]
    assert first_line.startswith("stopped: ")
    assert status in first_line


def test_long_output_keeps_its_head_and_its_tail() -> None:
    text = format_result(result(stderr="".join(f"line {i}\n" for i in range(5000))), LIMITS)
    assert "line 0\n" in text
    assert "line 4999\n[/stderr]" in text  # where a traceback ends
    assert "characters omitted" in text
    assert len(text) < 9000


def test_limits_must_be_positive() -> None:
    with pytest.raises(DeveloperError, match=r"SandboxLimits.wall_seconds must be positive"):
        SandboxLimits(wall_seconds=0)


# --- the tools over the real sandbox --------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("bwrap")
async def test_code_tools_serve_code_interpreter_and_run_python() -> None:
    runner = Sandbox(limits=LIMITS, pool_size=1)
    interpreter, run_python = code_tools(runner=runner)
    try:
        assert (interpreter.name, interpreter.builtin) == ("code_interpreter", "code_interpreter")
        assert (run_python.name, run_python.builtin) == ("run_python", None)
        assert run_python.parameters["required"] == ["code"]
        assert "no network" in run_python.description
        assert interpreter.timeout == LIMITS.wall_seconds + 10

        done = await interpreter.execute(interpreter.validate({"code": "print(6 * 7)"}))
        assert (done.text, done.is_error) == ("completed\n[stdout]\n42\n[/stdout]", False)

        done = await run_python.execute(run_python.validate({"code": "1 / 0"}))
        assert done.text.startswith("completed with exit status 1\n[stderr]\nTraceback")
        assert done.text.endswith("ZeroDivisionError: division by zero\n[/stderr]")
    finally:
        await runner.aclose()


@pytest.mark.anyio
@pytest.mark.usefixtures("bwrap")
async def test_oversized_code_is_refused() -> None:
    async with Sandbox(limits=SandboxLimits(code_bytes=100), pool_size=0) as runner:
        with pytest.raises(ToolExecutionError, match="the code is 101 bytes; the limit is 100"):
            await runner.run("#" * 101)


@pytest.mark.usefixtures("bwrap")
def test_timeout_sets_the_wall_clock_limit() -> None:
    interpreter, _ = BUILTIN_TOOLSETS["code"](timeout=3.5, pool_size=0)
    assert interpreter.timeout == 13.5


# --- without bubblewrap ---------------------------------------------------------------------


NAMESPACES_BLOCKED = "bwrap: No permissions to creating new namespace"  # Docker's seccomp


@pytest.fixture
def probe_fails(monkeypatch: pytest.MonkeyPatch, fresh_probe: None) -> None:
    """The startup probe fails as it does where namespaces are blocked (bwrap stays installed)."""
    monkeypatch.setattr(_launch, "_probe", lambda launch: NAMESPACES_BLOCKED)


async def refused(tool: Tool) -> str:
    done = await tool.execute(tool.validate({"code": "print(6 * 7)"}))
    assert done.is_error
    return done.text


@pytest.mark.anyio
@pytest.mark.usefixtures("probe_fails")
async def test_without_a_working_sandbox_the_tools_build_and_refuse_to_run_code() -> None:
    with pytest.warns(RuntimeWarning, match="Python sandbox is unavailable") as caught:
        interpreter, run_python = code_tools(pool_size=1)
    assert len(caught) == 1  # building warns once
    assert NAMESPACES_BLOCKED in str(caught[0].message)
    for tool in (interpreter, run_python):
        text = await refused(tool)
        assert text.startswith(f"{tool.name} failed: the Python sandbox is unavailable")
        assert NAMESPACES_BLOCKED in text
        assert "apt-get install bubblewrap" in text  # how to install it
        assert "`sandbox: none` in the config" in text  # or how to opt out


@pytest.mark.usefixtures("probe_fails")
def test_an_unavailable_sandbox_says_why_and_never_runs_code_unsandboxed() -> None:
    with pytest.warns(RuntimeWarning):
        sandbox = Sandbox(pool_size=2)
    sandbox.start()  # no workers to start
    assert not sandbox.available
    assert sandbox.sandboxed  # code is refused, not run without isolation
    assert sandbox.problem is not None
    assert NAMESPACES_BLOCKED in sandbox.problem
    assert "unprivileged user namespaces" in sandbox.problem
    assert sandbox.description.startswith("unavailable: bubblewrap cannot start a sandbox here")
    with pytest.raises(ToolExecutionError, match="no code can run"):
        anyio.run(sandbox.run, "print(1)")


@pytest.mark.anyio
@pytest.mark.usefixtures("fresh_probe")
async def test_missing_bubblewrap_is_refused_when_code_runs_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    with pytest.warns(RuntimeWarning, match=r"bubblewrap \(bwrap\) is not installed"):
        [run_python] = code_tools(names="custom")
    text = await refused(run_python)
    assert "bubblewrap (bwrap) is not installed" in text
    assert "apt-get install bubblewrap" in text
    assert "sandbox: none" in text


@pytest.mark.usefixtures("fresh_probe")
def test_a_bubblewrap_that_cannot_create_namespaces_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bwrap"  # what bwrap prints under Docker's default seccomp profile
    fake.write_text(f"#!/bin/sh\necho '{NAMESPACES_BLOCKED}' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.warns(RuntimeWarning):
        sandbox = Sandbox()
    assert sandbox.problem is not None
    assert NAMESPACES_BLOCKED in sandbox.problem
    assert "unprivileged user namespaces" in sandbox.problem
    with pytest.raises(SandboxUnavailableError, match=NAMESPACES_BLOCKED):
        _launch.resolve_launch("bwrap", SandboxLimits(), None, ())  # the failure is cached


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("both", ["code_interpreter", "run_python"]),
        ("native", ["code_interpreter"]),
        ("custom", ["run_python"]),
    ],
)
def test_names_picks_the_trained_name_the_custom_one_or_both(
    names: Any, expected: list[str]
) -> None:
    with pytest.warns(RuntimeWarning):
        runner = Sandbox(mode="none", pool_size=0)
    assert [t.name for t in code_tools(runner=runner, names=names)] == expected


@pytest.mark.anyio
@pytest.mark.usefixtures("fresh_probe")
async def test_sandbox_none_runs_code_and_warns_every_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # works without bubblewrap
    with pytest.warns(RuntimeWarning, match="code will run WITHOUT a sandbox"):
        runner = Sandbox(mode="none", limits=LIMITS, pool_size=1)
    _, run_python = code_tools(runner=runner)
    assert "WITHOUT a sandbox" in run_python.description
    try:
        for _ in range(2):
            with caplog.at_level(logging.WARNING, logger="tools.code"):
                caplog.clear()
                done = await run_python.execute(run_python.validate({"code": "print(2 + 2)"}))
            assert done.text == (
                "warning: this code ran WITHOUT a sandbox (sandbox: none): it could read and "
                "change anything the agent's user can\ncompleted\n[stdout]\n4\n[/stdout]"
            )
            assert [r.levelno for r in caplog.records] == [logging.WARNING]
    finally:
        await runner.aclose()


@pytest.mark.anyio
@pytest.mark.usefixtures("fresh_probe")
async def test_sandbox_none_keeps_the_limits_but_isolates_nothing() -> None:
    ours = (await anyio.Path(f"/proc/{os.getpid()}/environ").read_bytes()).decode()
    with pytest.warns(RuntimeWarning):
        # A wall limit far above the CPU limit: on a loaded machine a second of CPU takes longer.
        runner = Sandbox(
            mode="none", limits=replace(LIMITS, cpu_seconds=1, wall_seconds=60), pool_size=0
        )
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(repr(open(f'/proc/{os.getppid()}/environ').read()))\n"
        "while True:\n"
        "    pass\n"
    )
    done = await runner.run(code)
    assert done.stopped == "cpu"  # rlimits still apply
    lines = done.stdout.splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH']"  # its own environment is clean...
    assert lines[1] == repr(ours)  # ...but nothing stops it reading the runtime's: no sandbox
    assert not done.sandboxed


@pytest.fixture
def packages() -> Iterator[str]:
    """A directory with one module, open to everyone, so that only the read-only mount can
    refuse a write there."""
    with tempfile.TemporaryDirectory(prefix="llama-agent-pkgs-") as folder:
        os.chmod(folder, 0o777)
        module = Path(folder, "greeting.py")
        module.write_text("WORD = 'hello'\n")
        module.chmod(0o644)
        yield folder


@pytest.mark.anyio
@pytest.mark.usefixtures("bwrap")
async def test_python_path_makes_packages_importable_read_only(packages: str) -> None:
    code = (
        "import greeting\n"
        "print(greeting.WORD)\n"
        "try:\n"
        "    open(greeting.__file__ + '.new', 'w')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    async with Sandbox(limits=LIMITS, pool_size=0, python_path=[packages]) as runner:
        done = await runner.run(code)
    assert done.stdout == "hello\nRead-only file system\n"


@pytest.mark.usefixtures("bwrap")
def test_what_uid_65534_cannot_read_makes_a_loud_fallback_to_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.getuid() != 0:
        pytest.skip("as a normal user bwrap runs as that user and can read the directory")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="tools.code"):
        sandbox = Sandbox(python_path=[str(private)], pool_size=0)
    assert "process count NOT limited" in sandbox.description
    [record] = caplog.records
    assert "failed as uid 65534" in record.getMessage()
    assert f"Can't find source path {private}: Permission denied" in record.getMessage()
