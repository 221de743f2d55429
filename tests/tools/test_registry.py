"""The toolset registry: the built-ins and other packages' toolsets, found through entry points,
and a user's own `tools.py` that no longer collides with the built-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
from annotated_types import Gt, Interval

from agent.errors import DeveloperError
from agent.toolkit import ENTRY_POINT_GROUP, Toolset, check_settings, find_toolsets

ROOT = Path(__file__).resolve().parents[2]

SHOUT_MODULE = '''
from dataclasses import dataclass

from agent import tool
from agent.toolkit import Toolset


@dataclass(frozen=True, kw_only=True)
class ShoutSettings:
    """Loud tools."""

    times: int = 1
    """How many exclamation marks."""


def build(settings, context):
    @tool
    def shout(text: str) -> str:
        """Shout the text.

        Args:
            text: What to shout.
        """
        return text.upper() + "!" * settings.times

    return [shout]


toolset = Toolset(name="shout", description="Shouting", settings=ShoutSettings, build=build)
'''


def third_party(folder: Path, module: str = "shout_tools", source: str = SHOUT_MODULE) -> Path:
    """A package `module` installed in `folder` that registers the toolset `shout`."""
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nshout = {module}:toolset\n")
    return folder


def run(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, *command], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_builtins_are_registered_by_entry_point() -> None:
    import llama_agent_tools

    found = find_toolsets()
    assert found["search"] is llama_agent_tools.SEARCH
    assert found["code"] is llama_agent_tools.CODE
    assert found["math"] is llama_agent_tools.MATH
    assert found["code"].section == "sandbox"


def test_a_third_party_toolset_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(third_party(tmp_path)))
    found = find_toolsets()
    assert isinstance(found["shout"], Toolset)
    assert {"search", "code", "math"} <= found.keys()


@pytest.mark.slow
def test_a_third_party_toolset_is_listed_in_a_config(tmp_path: Path) -> None:
    folder = third_party(tmp_path)
    (folder / "config.yaml").write_text(
        "model: llama3.1\ntools:\n  - shout: {times: 3}\n  - math\n"
    )
    done = run(folder, "-m", "agent", "tools", "config.yaml", "--json")
    assert done.returncode == 0, done.stderr
    assert [t["name"] for t in json.loads(done.stdout)] == ["shout", "wolfram_alpha"]
    (folder / "config.yaml").write_text("model: x\ntools:\n  - shout: {time: 3}\n")
    done = run(folder, "-m", "agent", "tools", "config.yaml")
    assert done.returncode == 3
    assert "config.yaml:3: tools[0].shout.time: unknown key 'time' (did you mean 'times'?)" in (
        done.stderr
    )


def test_a_toolset_that_is_not_a_toolset_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(third_party(tmp_path, "broken_tools", "toolset = 42\n")))
    with pytest.raises(DeveloperError, match="must be a Toolset named 'shout', got 42"):
        find_toolsets()


USER_TOOLS = '''
def shout(text: str) -> str:
    """Shout the text.

    Args:
        text: What to shout.
    """
    return text.upper()
'''


@pytest.mark.slow
@pytest.mark.parametrize("tools", ["[tools:shout, math]", "[math, tools:shout]"])
def test_a_users_tools_module_beside_the_config_works(tmp_path: Path, tools: str) -> None:
    (tmp_path / "tools.py").write_text(USER_TOOLS)
    (tmp_path / "config.yaml").write_text(f"model: llama3.1\ntools: {tools}\n")
    done = run(tmp_path, "-m", "agent", "tools", "config.yaml", "--json")
    assert done.returncode == 0, done.stderr
    names = [t["name"] for t in json.loads(done.stdout)]
    assert sorted(names) == ["shout", "wolfram_alpha"]


@pytest.mark.slow
def test_a_users_tools_module_works_from_python(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(USER_TOOLS)
    script = textwrap.dedent(
        """
        from llama_agent_tools import math_tools
        from tools import shout
        from agent import Agent, load_agent

        agent = Agent(model="llama3.1", tools=[shout, *math_tools(names="custom")])
        print(",".join(t.name for t in agent.tools))
        print(",".join(t.name for t in load_agent("config.yaml").tools))
        """
    )
    (tmp_path / "config.yaml").write_text("model: llama3.1\ntools: [tools:shout, math]\n")
    done = run(tmp_path, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["shout,calculate", "shout,wolfram_alpha"]


def test_every_package_is_installed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "agent").rglob("__init__.py")
    }
    found |= {
        ".".join(("llama_agent_tools", *init.parent.relative_to(ROOT / "tools").parts))
        for init in (ROOT / "tools").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found
    assert setuptools["package-dir"] == {"llama_agent_tools": "tools"}


@dataclass(frozen=True, kw_only=True)
class _Settings:
    size: Annotated[int, Gt(0)] = 1
    share: Annotated[float, Interval(ge=0, le=1)] = 0.5
    mode: Literal["a", "b"] | None = None

    def __post_init__(self) -> None:
        check_settings(self)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "_Settings.size must be positive, got 0"),
        ({"share": 2}, "_Settings.share must be at most 1, got 2"),
        ({"share": -1}, "_Settings.share must be at least 0, got -1"),
        ({"mode": "c"}, "_Settings.mode must be one of 'a', 'b', None, got 'c'"),
    ],
)
def test_settings_constraints_are_checked_from_their_declaration(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(DeveloperError, match=message.replace(".", r"\.")):
        _Settings(**kwargs)  # type: ignore[arg-type]
    _Settings(mode="b", share=1, size=3)
