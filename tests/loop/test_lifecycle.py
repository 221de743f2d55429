"""What an agent holds is released with it: its backend, and what its tools hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from agent import Agent, load_agent
from agent.testing import OllamaEmulator, sequence
from tests.tools.procs import descendants

from .helpers import TODAY, add

pytestmark = pytest.mark.anyio


class Held:
    """A resource that records being closed, and can fail to close."""

    def __init__(self, name: str, log: list[str], *, fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def aclose(self) -> None:
        await (
            anyio.lowlevel.checkpoint()
        )  # a real close awaits: a cancelled caller must not skip it
        self.log.append(self.name)
        if self.fail:
            raise OSError(f"{self.name} would not close")


async def test_closing_the_agent_closes_its_resources_last_given_first() -> None:
    log: list[str] = []
    agent = Agent(tools=[add], resources=[Held("a", log), Held("b", log)])
    assert [r.name for r in agent.resources] == ["a", "b"]  # type: ignore[attr-defined]
    async with agent:
        pass
    assert log == ["b", "a"]


async def test_every_resource_is_closed_even_if_one_fails_or_the_caller_is_cancelled() -> None:
    log: list[str] = []
    agent = Agent(resources=[Held("a", log), Held("b", log, fail=True), Held("c", log)])
    with pytest.raises(OSError, match="b would not close"):
        await agent.aclose()
    assert log == ["c", "b", "a"]

    log.clear()
    with anyio.CancelScope() as scope:
        async with Agent(resources=[Held("x", log)]):
            scope.cancel()
            await anyio.sleep(1)
    assert log == ["x"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_an_agent_from_config_stops_the_code_sandbox_when_closed(tmp_path: Path) -> None:
    script = sequence("<|python_tag|>print(6 * 7)<|eom_id|>", "42.<|eot_id|>")
    async with OllamaEmulator(script) as emu:
        config = tmp_path / "agent.yaml"
        config.write_text(f"model: llama3.1\nollama:\n  host: {emu.url}\ntools: [code]\n")
        before = set(descendants())
        async with load_agent(config, today=TODAY) as agent:
            result = await agent.run("Six times seven, in Python?")
            # The run left the sandbox's warm pool waiting for the next snippet.
            assert set(descendants()) - before
        assert result.answer == "42."
        assert next(m.content for m in result.messages if m.role == "tool").count("42") == 1
        # Closed with the agent: no sandbox process is left.
        assert set(descendants()) - before == set()
