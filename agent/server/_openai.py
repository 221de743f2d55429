"""OpenAI's chat-completions shapes: the request a client sends, the response and the chunks it
reads back, the error body it understands.

Clients send more than the messages: the official client and chat UIs add `stream_options`,
`user`, `metadata`, sampling settings, multi-part content arrays (Open WebUI), a `name` on
system and assistant messages (LibreChat). The agent's own config decides sampling, so those
are accepted and ignored; only what would change the meaning (images, a client's tool calls)
is refused with a message that says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.llama3 import Message
from agent.loop import RunResult

SESSION_HEADER = "x-session-id"
TOOL_EVENTS_HEADER = "x-tool-events"


class RequestError(Exception):
    """The request cannot be served as sent (HTTP 400 or 404, OpenAI's error body)."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """What the server takes from a `/v1/chat/completions` body."""

    task: Message
    history: tuple[Message, ...]
    stream: bool
    include_usage: bool
    session: str | None
    tool_events: bool


def parse_chat_request(
    body: Any, headers: Mapping[str, str], *, served: Sequence[str]
) -> ChatRequest:
    """Validate the body; the last message is the task, the ones before it the history."""
    if not isinstance(body, Mapping):
        raise RequestError("the body must be a JSON object")
    model = body.get("model")
    if model is not None and model not in served:
        raise RequestError(
            f"model '{model}' is not served here; GET /v1/models lists {', '.join(served)}",
            status=404,
            code="model_not_found",
        )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list")
    messages = [_message(m, i) for i, m in enumerate(raw)]
    task = messages[-1]
    if task.role != "user":
        raise RequestError(f"the last message must be the user's, got role '{task.role}'")
    options = body.get("stream_options")
    session = headers.get(SESSION_HEADER) or body.get("session")
    if session is not None and (not isinstance(session, str) or not session.strip()):
        raise RequestError("'session' must be a non-empty string")
    tool_events = body.get("tool_events", headers.get(TOOL_EVENTS_HEADER, "") == "true")
    return ChatRequest(
        task=task,
        history=tuple(messages[:-1]),
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        session=session,
        tool_events=bool(tool_events),
    )


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _message(data: Any, index: int) -> Message:
    if not isinstance(data, Mapping):
        raise RequestError(f"messages[{index}] must be an object")
    role = _ROLES.get(data.get("role", ""))
    if role is None:
        raise RequestError(
            f"messages[{index}]: role '{data.get('role')}' is not accepted (system, developer, "
            "user, assistant): the agent runs its own tools, so a client's tool results have "
            "no call to answer"
        )
    if role == "assistant" and data.get("tool_calls"):
        raise RequestError(f"messages[{index}]: the agent makes its own tool calls")
    # Untrusted, whoever sent it: special-token text in it is neutralized when rendered.
    return Message(role=role, content=_text(data.get("content"), index))  # type: ignore[arg-type]


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise RequestError(f"messages[{index}].content must be a string or a list of parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                f"messages[{index}].content: only text parts are accepted (got {kind!r}); "
                "Llama 3.1's native tool format is text only"
            )
        texts.append(part["text"])
    return "\n".join(texts)


# --- what goes back -------------------------------------------------------------------------------


def finish_reason(result: RunResult) -> str:
    """`stop` for an answer, `length` for one cut off; a limit that ended the run early is a
    `stop` too, with the status in the `llama_agent` field."""
    return "length" if result.status == "length" else "stop"


def usage(result: RunResult) -> dict[str, int]:
    total = result.usage.total
    return {
        "prompt_tokens": total.prompt_eval_count,
        "completion_tokens": total.eval_count,
        "total_tokens": total.prompt_eval_count + total.eval_count,
    }


def extension(result: RunResult, session: str | None) -> dict[str, Any]:
    """The `llama_agent` field: what an OpenAI response has no place for."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "steps": result.steps,
        "session": session,
        "warnings": list(result.warnings),
    }


def completion(
    result: RunResult, *, model: str, session: str | None, events: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """A whole `chat.completion` object."""
    extra = extension(result, session)
    if events is not None:
        extra["events"] = events
    return {
        "id": f"chatcmpl-{result.run_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage(result),
        "llama_agent": extra,
    }


class Chunks:
    """The `chat.completion.chunk` objects of one streamed response."""

    def __init__(self, run_id: str, model: str) -> None:
        self.id = f"chatcmpl-{run_id}"
        self.model = model
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Tool activity, for clients that asked: no choices, so other clients skip it."""
        return self._chunk([], llama_agent={"event": event})

    def usage(self, result: RunResult) -> dict[str, Any]:
        return self._chunk([], usage=usage(result))

    def end(self, result: RunResult, session: str | None) -> dict[str, Any]:
        chunk = self.delta({}, finish_reason(result))
        chunk["llama_agent"] = extension(result, session)
        return chunk
