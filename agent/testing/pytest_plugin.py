"""pytest fixtures for testing an agent against `OllamaEmulator`, registered by entry point.

```python
import pytest
from agent.testing import call_tool

@pytest.mark.anyio
async def test_weather(ollama_emulator, scripted_agent):
    agent = scripted_agent(call_tool("get_weather", {"city": "Paris"}), tools=[get_weather])
    result = await agent.run("Weather in Paris?")
    assert ollama_emulator.completions[0].prompt.endswith("...")
```

- `ollama_emulator`: a running `OllamaEmulator` (echoing until a test sets `.script`), fresh for
  each test. It runs on its own event loop in a background thread, so sync tests can use it
  (a subprocess with `OLLAMA_HOST=ollama_emulator.url`, or `anyio.run(agent.run, "task")`) as
  well as async tests under anyio's pytest plugin. Its async methods are called through its
  portal: `ollama_emulator.portal.call(ollama_emulator.refuse_connections)`.
- `scripted_agent`: `scripted_agent(script, **agent_options)` sets the emulator's script and
  returns an `Agent` that talks to it (`Agent(host=ollama_emulator.url, **agent_options)`).
  An agent's connection pool closes with the event loop that used it: nothing to close.

pytest loads this module in every run where llama-agent is installed, with or without the
`testing` extra, so it imports nothing of the emulator until a fixture is used: without the
extra, only the tests that use these fixtures fail, with the message that says what to install.
Where plugin autoloading is off (`PYTEST_DISABLE_PLUGIN_AUTOLOAD`), load it with
`-p agent.testing.pytest_plugin`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agent import Agent
    from agent.testing import OllamaEmulator, Script


@pytest.fixture
def ollama_emulator() -> Iterator[OllamaEmulator]:
    """A running `OllamaEmulator`; set what the model writes with `ollama_emulator.script`."""
    from agent.testing import OllamaEmulator

    with OllamaEmulator().start_in_thread() as emulator:
        yield emulator


@pytest.fixture
def scripted_agent(ollama_emulator: OllamaEmulator) -> Callable[..., Agent]:
    """`scripted_agent(script, **agent_options)`: an `Agent` on `ollama_emulator`, scripted."""
    from agent import Agent

    def make(script: Script | None = None, /, **agent_options: Any) -> Agent:
        if script is not None:
            ollama_emulator.script = script
        return Agent(host=ollama_emulator.url, **agent_options)

    return make
