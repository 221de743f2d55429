"""Which Llama 3.x prompt format a model name calls for."""

from __future__ import annotations

import re
from typing import Literal

from agent.llama3._types import ToolFormat

Family = Literal["3.1", "3.2", "3.3"]

_VERSION = re.compile(r"llama[\s_-]*3(?:[._-]([0-9]))?(?![0-9])", re.IGNORECASE)
_VISION = re.compile(r"vision|\b(?:11|90)b\b", re.IGNORECASE)


def model_family(model: str) -> Family:
    """The prompt-format family of a model name.

    Understands Ollama names (`llama3.1:70b`, `llama3.2:3b`, `llama3.3`), Hugging Face names
    (`hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M`) and Meta's (`Llama3.1-8B-Instruct`).
    Llama 3.2 vision models (11B, 90B) use the 3.1 format, as in Meta's llama-stack, so they give
    `"3.1"`; so does anything unknown (and Llama 3.0).
    """
    match = _VERSION.search(model)
    minor = match.group(1) if match else None
    if minor == "2" and not _VISION.search(model):
        return "3.2"
    if minor == "3":
        return "3.3"
    return "3.1"


def default_tool_format(model: str) -> ToolFormat:
    """Meta's default custom-tool format: JSON for 3.1, the python list for 3.2 and 3.3."""
    return "json" if model_family(model) == "3.1" else "python_list"
