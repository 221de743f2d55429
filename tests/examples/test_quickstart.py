"""`examples/quickstart/`: the README's three quickstart programs, run as a reader runs them
(from that folder, `OLLAMA_HOST` pointing at the emulator)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from agent.testing import OllamaEmulator, ScriptRequest, tool_call_text

from .conftest import EXAMPLES

FOLDER = EXAMPLES / "quickstart"


def model(request: ScriptRequest) -> str:
    """Checks the weather for coat questions and calculates "What is ...?" ones."""
    if request.tool_results:
        return f"Per the tool: {request.tool_results[-1]}.<|eot_id|>"
    if "coat" in request.last_user:
        return tool_call_text("get_weather", {"city": "Paris"})
    question = re.fullmatch(r"What is (.+)\?", request.last_user)
    assert question is not None, request.last_user
    return tool_call_text("wolfram_alpha", {"query": question[1]})


def test_the_three_quickstart_programs_run() -> None:
    with OllamaEmulator(model).start_in_thread() as emu:
        env = {**os.environ, "OLLAMA_HOST": emu.url}
        commands = {
            "tools": [sys.executable, "weather.py"],
            "yaml": [sys.executable, "-m", "agent", "run", "agent.yaml", "What is 6*7?"],
            "stream": [sys.executable, "stream.py"],
        }
        running = {
            name: subprocess.Popen(
                command,
                cwd=FOLDER,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, command in commands.items()
        }
        outputs = {name: process.communicate(timeout=60) for name, process in running.items()}
        codes = {name: process.returncode for name, process in running.items()}
        prompts = [r.prompt or "" for r in emu.completions]

    assert codes == {"tools": 0, "yaml": 0, "stream": 0}, outputs
    weather = "Per the tool: 22 degrees celsius, sunny, in Paris."
    assert outputs["tools"][0] == f"{weather}\nanswered 2\n"
    assert outputs["yaml"][0] == "Per the tool: 42.\n"
    assert '-> wolfram_alpha(query="6*7")' in outputs["yaml"][1]
    assert outputs["stream"][0] == (
        f"[get_weather({{'city': 'Paris'}})]\n{weather}\n(answered in 2 steps)\n"
        "Per the tool: 1267650600228229401496703205376.\n"
    )
    # The YAML agent got its system prompt, a built-in and the tool imported from weather.py.
    yaml_prompt = next(p for p in prompts if "What is 6*7?" in p)
    assert "You are a careful assistant." in yaml_prompt
    assert "Tools: wolfram_alpha\n" in yaml_prompt  # Llama 3.1's trained name
    assert '"name": "get_weather"' in yaml_prompt
