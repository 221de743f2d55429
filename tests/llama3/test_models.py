"""Model names to prompt-format families."""

from __future__ import annotations

import pytest

from agent.llama3 import default_tool_format, model_family


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("llama3.1", "3.1"),
        ("llama3.1:70b", "3.1"),
        ("llama3.1:8b-instruct-q4_K_M", "3.1"),
        ("llama3.2", "3.2"),
        ("llama3.2:3b", "3.2"),
        ("llama3.2:1b-instruct-fp16", "3.2"),
        ("llama3.3", "3.3"),
        ("llama3.3:70b", "3.3"),
        ("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "3.2"),
        ("hf.co/unsloth/Llama-3.3-70B-Instruct-GGUF", "3.3"),
        ("Meta-Llama-3.1-8B-Instruct", "3.1"),
        ("Llama3.2-3B-Instruct", "3.2"),
        ("llama3.2-vision:11b", "3.1"),
        ("llama3", "3.1"),
        ("llama3:8b", "3.1"),
        ("mistral", "3.1"),
        ("", "3.1"),
    ],
)
def test_model_family(model: str, family: str) -> None:
    assert model_family(model) == family


def test_default_tool_format() -> None:
    assert default_tool_format("llama3.1:70b") == "json"
    assert default_tool_format("llama3.2:3b") == "python_list"
    assert default_tool_format("llama3.3") == "python_list"
