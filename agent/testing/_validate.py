"""Request validation on the emulator, with Ollama's status codes and messages (§3.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from agent.testing._models import EmulatedModel

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

Endpoint = Literal["generate", "chat"]


_INT_OPTIONS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
_FLOAT_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)


class Reject(Exception):
    """Answer this status with `{\"error\": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def validate(emu: OllamaEmulator, body: dict[str, Any], endpoint: Endpoint) -> EmulatedModel:
    name = body.get("model", body.get("name"))
    if not isinstance(name, str | None):
        raise Reject(
            400, "json: cannot unmarshal number into Go struct field .model of type string"
        )
    if not name:
        raise Reject(400, "model is required")
    kind = "GenerateRequest" if endpoint == "generate" else "ChatRequest"
    for field, expected in (("prompt", str), ("raw", bool), ("stream", bool), ("messages", list)):
        value = body.get(field)
        if value is not None and not isinstance(value, expected):
            go_type = {str: "string", bool: "bool", list: "[]api.Message"}[expected]
            raise Reject(
                400,
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"{kind}.{field} of type {go_type}",
            )
    model = emu.find_model(name)
    if model is None:
        raise Reject(404, f"model '{name}' not found")
    if (
        endpoint == "generate"
        and body.get("raw")
        and any(body.get(k) for k in ("system", "template", "context"))
    ):
        raise Reject(400, "raw mode does not support template, system, or context")
    if body.get("think") not in (None, False) and "thinking" not in model.capabilities:
        raise Reject(400, f'"{name}" does not support thinking')
    if "completion" not in model.capabilities:
        raise Reject(400, f'"{name}" does not support {endpoint}')
    if endpoint == "chat":
        if body.get("tools") and "tools" not in model.capabilities:
            raise Reject(400, f"{model.full_name} does not support tools")
        for message in body.get("messages") or []:
            for call in message.get("tool_calls") or []:
                if not isinstance((call.get("function") or {}).get("arguments", {}), dict):
                    raise Reject(
                        400,
                        "json: cannot unmarshal string into Go struct field ChatRequest.messages."
                        "tool_calls.function.arguments of type api.ToolCallFunctionArguments",
                    )
    options = body.get("options") or {}
    for key, value in options.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _INT_OPTIONS and not number:
            raise Reject(500, f'option "{key}" must be of type integer')
        if key in _FLOAT_OPTIONS and not number:
            raise Reject(500, f'option "{key}" must be of type float')
    return model


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
