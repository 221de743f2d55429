"""What the backend makes of `/api/show`, and the options it puts on the wire."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from agent.backends._base import GenerateOptions, ModelInfo
from agent.errors import ModelCapabilityError
from agent.llama3 import model_family

Family = Literal["3.1", "3.2", "3.3", "unknown"]
_LLAMA3_RE = re.compile(r"llama[-_ ]?3(?:[._-]?[0-9])?(?![0-9])", re.IGNORECASE)


def describe(
    model: str,
    *,
    model_info: Mapping[str, Any],
    capabilities: tuple[str, ...],
    server_version: str,
) -> ModelInfo:
    """A `ModelInfo` from the fields of `/api/show`."""
    return ModelInfo(
        name=model,
        context_length=context_length(model_info),
        family=family(model, model_info),
        capabilities=capabilities,
        server_version=server_version,
    )


# The published llama3.x Modelfiles' stops (PROTOCOL.md §1.7), and `<|eom_id|>`: an end of
# generation in every Ollama since 0.3.10, but printed as text by 0.3.0-0.3.9 (§1.5).
LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>")


def wire_options(options: GenerateOptions, *, num_ctx: int, num_predict: int) -> dict[str, Any]:
    """The request's `options`: sizes from the backend, sampling from the caller."""
    wire: dict[str, Any] = {"num_ctx": num_ctx, "num_predict": num_predict}
    for key in ("temperature", "seed", "top_p", "top_k"):
        value = getattr(options, key)
        if value is not None:
            wire[key] = value
    if options.stop:
        # A stop list replaces the Modelfile's on the server (§1.2), so Llama 3's own stops are
        # added back: without them a model that writes a new header runs on into a fake turn.
        stops = list(dict.fromkeys(options.stop))
        wire["stop"] = stops + [s for s in LLAMA3_STOPS if s not in stops]
    return wire


def context_length(model_info: Mapping[str, Any]) -> int:
    architecture = model_info.get("general.architecture")
    value = model_info.get(f"{architecture}.context_length")
    if not isinstance(value, int):
        value = next(
            (
                v
                for k, v in model_info.items()
                if k.endswith(".context_length") and isinstance(v, int)
            ),
            None,
        )
    return value if isinstance(value, int) and value > 0 else 2048


def family(model: str, model_info: Mapping[str, Any]) -> Family:
    """The Llama 3.x format family, from the GGUF's name or the model's; "unknown" if neither.

    `agent.llama3.model_family` decides between 3.1, 3.2 and 3.3 (3.2 vision uses 3.1's).
    """
    for text in (model_info.get("general.basename"), model_info.get("general.name"), model):
        if isinstance(text, str) and _LLAMA3_RE.search(text):
            return model_family(text)
    return "unknown"


def check_capabilities(info: ModelInfo, *, tools: bool) -> None:
    """Raise `ModelCapabilityError` when the reported capabilities rule the model out."""
    if not info.capabilities:
        return
    if "completion" not in info.capabilities:
        raise ModelCapabilityError(
            f"model '{info.name}' cannot generate text (capabilities: "
            f"{', '.join(info.capabilities)}). Use a chat model such as llama3.1."
        )
    if tools and not info.supports_tools:
        raise ModelCapabilityError(
            f"model '{info.name}' does not support tools according to Ollama (its template has "
            "no tool support). Use llama3.1, llama3.2 or llama3.3 from the Ollama library "
            "(`ollama pull llama3.1`)."
        )
