"""Scripts and faults: what the emulated model writes, and what goes wrong on the way.

A script is any callable `(ScriptRequest) -> str | Sequence[str]` (or an async one). It returns
the completion the model generates, Llama-native, end token included, e.g.
`'<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'`; the emulator
then does what Ollama does with it (see `agent.testing._response`). A sequence of strings sets
the streamed pieces exactly.

The ready-made scripts are stateless where they can be (`echo`, `answer`, `call_tool`,
`call_tools`): they read the prompt, so hundreds of concurrent runs can share one. `sequence` is
the stateful exception: it hands out its replies in order across all requests.

A fault hits the next `times` requests whose path is in `paths` (`times=None`: every one); one
fault per request, the first that matches in the order they were added. Give them to
`OllamaEmulator(faults=[...])` or add them later with `emu.inject(...)`. The real server
conditions they reproduce (PROTOCOL.md §3.2, §6):

* `Busy()`: 503 `server busy, please try again.  maximum pending requests exceeded`.
* `ServerError()`: 500 `model runner has unexpectedly stopped, …` before any output.
* `DropConnection(after_chunks=k)`: k NDJSON lines, then half a line and a TCP reset
  (k=0: the reset comes before any response).
* `Stall(after_chunks=k, seconds=s)`: k lines, then silence for s seconds (None: until the
  client gives up).
* `GarbageLine(after_chunks=k)`: k lines, then a line that is not JSON; the stream goes on.
* `ErrorLine(after_chunks=k)`: k lines, then
  `{"error": "an error was encountered while running the model: …"}` and the end (status 200).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Endpoint = Literal["generate", "chat"]
ScriptOutput = str | Sequence[str]
Script = Callable[["ScriptRequest"], ScriptOutput | Awaitable[ScriptOutput]]

# A turn: its header, then its content up to the first end token or next header (or the end).
# Two searches rather than one lazy `.*?` with a lookahead, which tries the lookahead at every
# character of a long system prompt.
_HEADER_RE = re.compile(r"<\|start_header_id\|>([a-z_]+)<\|end_header_id\|>\n\n")
_CONTENT_END_RE = re.compile(r"<\|(?:eot_id|eom_id|start_header_id)\|>")


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One `<|start_header_id|>role<|end_header_id|>` block of a prompt."""

    role: str
    content: str


@dataclass(frozen=True, kw_only=True)
class ScriptRequest:
    """What the script sees: the prompt as the model sees it (minus the BOS Ollama adds)."""

    endpoint: Endpoint
    model: str
    prompt: str
    raw: bool
    options: Mapping[str, Any] = field(default_factory=dict)
    system: str | None = None
    messages: Sequence[Mapping[str, Any]] = ()
    tools: Sequence[Mapping[str, Any]] = ()
    index: int = 0  # how many requests the script has answered before this one

    @property
    def turns(self) -> list[Turn]:
        """The prompt's turns in order; the open assistant header at the end has empty content."""
        prompt = self.prompt
        turns: list[Turn] = []
        position = 0
        while (header := _HEADER_RE.search(prompt, position)) is not None:
            start = header.end()
            end = _CONTENT_END_RE.search(prompt, start)
            position = end.start() if end is not None else len(prompt)
            turns.append(Turn(role=header.group(1), content=prompt[start:position]))
        return turns

    @property
    def partial(self) -> str:
        """Assistant text already in the prompt after its open header (a continuation), or ""."""
        head = "<|start_header_id|>assistant<|end_header_id|>\n\n"
        at = self.prompt.rfind(head)
        if at < 0:
            return ""
        tail = self.prompt[at + len(head) :]
        return "" if "<|eot_id|>" in tail or "<|eom_id|>" in tail else tail

    @property
    def last_user(self) -> str:
        """The content of the last user turn ("" if none)."""
        return next((t.content for t in reversed(self.turns) if t.role == "user"), "")

    @property
    def tool_results(self) -> list[str]:
        """The `ipython` results that follow the last user turn, in order."""
        results: list[str] = []
        for turn in reversed(self.turns):
            if turn.role == "user":
                break
            if turn.role == "ipython":
                results.append(turn.content)
        return results[::-1]


class ScriptExhaustedError(RuntimeError):
    """`sequence()` was asked for more replies than it has."""


def answer(text: str) -> Script:
    """Always answer `text` (end of turn)."""

    def script(request: ScriptRequest) -> str:
        return f"{text}<|eot_id|>"

    return script


def echo(prefix: str = "") -> Script:
    """Answer with the last tool result after the user's turn if any, else the user's text."""

    def script(request: ScriptRequest) -> str:
        results = request.tool_results
        return f"{prefix}{results[-1] if results else request.last_user}<|eot_id|>"

    return script


def sequence(*replies: str | tuple[str, ...], repeat_last: bool = False) -> Script:
    """Reply with `replies` in order, one per request. A reply without an end token ends the turn.

    When they run out, the request fails with HTTP 500 (so a test notices), unless `repeat_last`.
    A continuation (a prompt ending in part of the last reply, as after a resumed stream) gets
    the last reply again; the emulator sends only the part not yet in the prompt.
    """
    if any(isinstance(reply, list) for reply in replies):
        # sequence([a, b]) reads like two replies but would be one reply in two chunks.
        raise TypeError(
            "sequence() takes replies as separate arguments: sequence(first, second); "
            "a tuple of strings is one reply streamed in those chunks"
        )
    lock = threading.Lock()
    position = 0

    def script(request: ScriptRequest) -> ScriptOutput:
        nonlocal position
        with lock:
            if (
                request.partial
                and position
                and _text(replies[position - 1]).startswith(request.partial)
            ):
                return replies[position - 1]
            if position >= len(replies):
                if not repeat_last or not replies:
                    raise ScriptExhaustedError(
                        f"sequence() has {len(replies)} replies and request {position + 1} "
                        "asked for another"
                    )
                return replies[-1]
            position += 1
            return replies[position - 1]

    return script


def _text(reply: str | Sequence[str]) -> str:
    return reply if isinstance(reply, str) else "".join(reply)


def tool_call_text(
    name: str, arguments: Mapping[str, Any], *, python_tag: bool = True, key: str = "parameters"
) -> str:
    """A Llama 3.1 JSON tool call as the model writes it, with its end token."""
    body = json.dumps({"name": name, key: dict(arguments)})
    if python_tag:
        return f"<|python_tag|>{body}<|eom_id|>"
    return f"{body}<|eot_id|>"


ThenReply = str | Callable[[str], str]


def call_tool(
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    then: ThenReply = "Done.",
    python_tag: bool | None = None,
) -> Script:
    """Call tool `name` with `arguments`, then answer `then` once its result is in the prompt.

    `then` is a string or a function of the tool result (the last `ipython` turn's text).
    `python_tag=None` writes what a real model writes: `<|python_tag|>{...}<|eom_id|>` for a raw
    prompt, bare JSON through `/api/chat` (whose published template has no ipython environment).
    """
    return call_tools([(name, arguments or {})], then=then, python_tag=python_tag)


def call_tools(
    calls: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    then: ThenReply = "Done.",
    python_tag: bool | None = None,
) -> Script:
    """Make one call per step, in order (one per model turn); then answer `then`."""

    def script(request: ScriptRequest) -> str:
        step = len(request.tool_results)
        if step < len(calls):
            tag = request.raw if python_tag is None else python_tag
            name, arguments = calls[step]
            return tool_call_text(name, arguments, python_tag=tag)
        results = request.tool_results
        last = results[-1] if results else ""
        reply = then(last) if callable(then) else then
        return f"{reply}<|eot_id|>"

    return script


# --- faults ---------------------------------------------------------------------------------------

GENERATION_PATHS = ("/api/generate", "/api/chat")
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Base of every fault: which requests it hits."""

    times: int | None = 1
    paths: tuple[str, ...] = GENERATION_PATHS


@dataclass(frozen=True, kw_only=True)
class Busy(Fault):
    """Answer 503, as Ollama does when its queue (`OLLAMA_MAX_QUEUE`) is full."""

    message: str = BUSY_MESSAGE


@dataclass(frozen=True, kw_only=True)
class ServerError(Fault):
    """Answer an error status with `{"error": message}` before any output."""

    status: int = 500
    message: str = RUNNER_STOPPED


@dataclass(frozen=True, kw_only=True)
class DropConnection(Fault):
    """Reset the connection after `after_chunks` lines, in the middle of the next one."""

    after_chunks: int = 1


@dataclass(frozen=True, kw_only=True)
class Stall(Fault):
    """Stop sending after `after_chunks` lines, for `seconds` (None: until the client leaves)."""

    after_chunks: int = 0
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class GarbageLine(Fault):
    """Send a line that is not JSON after `after_chunks` lines."""

    after_chunks: int = 1
    line: str = "<html><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True, kw_only=True)
class ErrorLine(Fault):
    """End the stream after `after_chunks` lines with an in-band error line (HTTP status 200)."""

    after_chunks: int = 1
    message: str = (
        "an error was encountered while running the model: unexpected EOF from llama runner"
    )


class FaultBook:
    """The faults still to fire; consumed one request at a time."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self._entries: list[list[object]] = []
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        self._entries.append([fault, fault.times])

    def clear(self) -> None:
        self._entries.clear()

    def take(self, path: str) -> Fault | None:
        """The fault for a request to `path`, if any (and count it as used)."""
        for entry in self._entries:
            fault, left = entry
            assert isinstance(fault, Fault)
            if path not in fault.paths or left == 0:
                continue
            if isinstance(left, int):
                entry[1] = left - 1
            return fault
        return None
