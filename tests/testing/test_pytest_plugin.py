"""The pytest plugin (`agent.testing.pytest_plugin`): its fixtures, from sync tests and async ones,
the README's testing sample run as a user pastes it, and pytest without the `testing` extra."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from agent import Agent, tool
from agent.testing import OllamaEmulator, answer, call_tool

README = Path(__file__).resolve().parents[2] / "README.md"

# What a missing `testing` extra looks like: h11 cannot be imported (None in sys.modules).
WITHOUT_EXTRA = "import sys; sys.modules['h11'] = None; "


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


def _pytest(folder: Path, *, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run pytest in `folder` as a user would there: its own rootdir, no options of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "PYTEST_ADDOPTS")}
    code = f"{prelude}import pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider']))"
    return subprocess.run(
        [sys.executable, "-c", "import sys; " + code],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_sync_test_runs_an_agent_against_the_fixture(
    ollama_emulator: OllamaEmulator, scripted_agent: Callable[..., Agent]
) -> None:
    agent = scripted_agent(call_tool("get_weather", {"city": "Oslo"}), tools=[get_weather])
    result = anyio.run(agent.run, "Weather in Oslo?")
    assert result.status == "answered"
    assert [m.content for m in result.messages if m.role == "tool"] == ["sunny in Oslo"]
    assert len(ollama_emulator.completions) == 2
    # A second run in a new event loop works too (the agent's pool is per loop).
    ollama_emulator.script = answer("Again.")
    assert anyio.run(agent.run, "Again?").answer == "Again."
    ollama_emulator.portal.call(ollama_emulator.refuse_connections)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ollama_emulator.url}/api/version")


@pytest.mark.anyio
async def test_an_async_test_uses_the_same_fixtures(
    ollama_emulator: OllamaEmulator, scripted_agent: Callable[..., Agent]
) -> None:
    agent = scripted_agent(answer("Hello."))
    assert (await agent.run("Hi")).answer == "Hello."
    assert ollama_emulator.completions[0].model == "llama3.1"


def test_each_test_gets_a_fresh_emulator(ollama_emulator: OllamaEmulator) -> None:
    assert ollama_emulator.requests == []
    assert httpx.get(f"{ollama_emulator.url}/api/version").json() == {"version": "0.12.6"}


def test_the_readme_sample_runs_as_pasted_into_an_empty_project(tmp_path: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Testing your own agent") :]
    section = section[: section.index("\n## ", 1)]
    [sample] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (tmp_path / "test_weather.py").write_text(sample, encoding="utf-8")

    done = _pytest(tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^1 passed in ", done.stdout, flags=re.MULTILINE), done.stdout


def test_pytest_works_without_the_extra_and_the_fixture_says_what_to_install(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_user.py").write_text(
        "def test_unrelated():\n"
        "    assert 1 + 1 == 2\n\n"
        "def test_with_the_emulator(ollama_emulator):\n"
        "    pass\n",
        encoding="utf-8",
    )

    done = _pytest(tmp_path, prelude=WITHOUT_EXTRA)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 error" in done.stdout
    assert (
        "agent.testing needs the testing extra: pip install 'llama-agent[testing]'" in done.stdout
    )


def test_importing_agent_testing_without_the_extra_says_what_to_install() -> None:
    code = WITHOUT_EXTRA + (
        "import agent.testing\n"  # the package imports (the pytest plugin lives in it) ...
        "try:\n"
        "    from agent.testing import OllamaEmulator\n"  # ... but nothing can be taken from it
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name, exc, sep='|')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "TestingExtraMissingError|h11|agent.testing needs the testing extra: "
        "pip install 'llama-agent[testing]'"
    )


def test_serve_without_the_extra_says_what_to_install_in_one_line() -> None:
    code = WITHOUT_EXTRA + (
        "import runpy; sys.argv = ['agent.testing', 'serve']; "
        "runpy.run_module('agent.testing', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr == (
        "error: agent.testing needs the testing extra: pip install 'llama-agent[testing]'\n"
    )
