"""The emulated model: which models exist (what `/api/tags`, `/api/show` and `/api/ps` report)
and their template; the scripts that say what the model writes; the faults on the way.

Values follow the published `llama3.1` / `llama3.2` / `llama3.3` models (PROTOCOL.md §1.7, §3.1):
`llama.context_length` 131072, the Modelfile stop list, capabilities `["completion","tools"]`, the
Go template read back by `/api/show`.

`render_chat` renders that template the way Ollama does for `/api/chat` (and templated
`/api/generate`): the llama3.1 Go template (PROTOCOL.md §1.7) and its llama3.2 variant, with
Ollama's `collate` step (§2.1): system messages joined into `.System`, consecutive same-role
messages merged, roles the template does not know dropped, tools only in the last user message,
`tool` rendered as `ipython`.

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

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["3.1", "3.2", "3.3"]

LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
MODIFIED_AT = "2025-07-01T12:00:00.000000000Z"

LLAMA31_TEMPLATE = "\n".join(
    [
        "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>",
        "{{- if .System }}",
        "",
        "{{ .System }}",
        "{{- end }}",
        "{{- if .Tools }}",
        "",
        "Cutting Knowledge Date: December 2023",
        "",
        "When you receive a tool call response, use the output to format an answer to "
        "the orginal user question.",
        "",
        "You are a helpful assistant with tool calling capabilities.",
        "{{- end }}<|eot_id|>",
        "{{- end }}",
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        '{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>',
        "{{- if and $.Tools $last }}",
        "",
        "Given the following functions, please respond with a JSON for a function call "
        "with its proper arguments that best answers the given prompt.",
        "",
        'Respond in the format {"name": function name, "parameters": dictionary of '
        "argument name and its value}. Do not use variables.",
        "",
        "{{ range $.Tools }}",
        "{{- . }}",
        "{{ end }}",
        "Question: {{ .Content }}<|eot_id|>",
        "{{- else }}",
        "",
        "{{ .Content }}<|eot_id|>",
        "{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>",
        "",
        "{{ end }}",
        '{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>',
        "{{- if .ToolCalls }}",
        "{{ range .ToolCalls }}",
        '{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}',
        "{{- else }}",
        "",
        "{{ .Content }}",
        "{{- end }}{{ if not $last }}<|eot_id|>{{ end }}",
        '{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>',
        "",
        "{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>",
        "",
        "{{ end }}",
        "{{- end }}",
        "{{- end }}",
    ]
)

_SIZES: dict[str, tuple[str, int]] = {
    "1b": ("1.2B", 1321083232),
    "3b": ("3.2B", 2019393189),
    "8b": ("8.0B", 4920753328),
    "70b": ("70.6B", 42520413916),
    "405b": ("405.9B", 243323423640),
}
_DEFAULT_SIZE = {"3.1": "8b", "3.2": "3b", "3.3": "70b"}


def normalize_name(name: str) -> str:
    """`llama3.1` → `llama3.1:latest`, the way Ollama completes a name without a tag."""
    base = name.rsplit("/", 1)[-1]
    return name if ":" in base else f"{name}:latest"


def family_of(name: str) -> Family | None:
    """The Llama 3.x release a model name refers to, if any."""
    match = re.search(r"llama-?3\.([123])", name.lower())
    if match is None:
        return None
    return {"1": "3.1", "2": "3.2", "3": "3.3"}[match.group(1)]  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class EmulatedModel:
    """A model the emulator has "pulled". Build one with `EmulatedModel.llama(name)`."""

    name: str
    family: Family | None = "3.1"
    context_length: int = 131072
    capabilities: tuple[str, ...] = ("completion", "tools")
    parameter_size: str = "8.0B"
    quantization_level: str = "Q4_K_M"
    size: int = 4920753328
    template: str = LLAMA31_TEMPLATE
    stop: tuple[str, ...] = LLAMA3_STOPS
    system: str = ""
    # The most context the server gives this model whatever a request asks (memory, a proxy):
    # longer prompts are truncated. None: requests get the `num_ctx` they ask for.
    max_num_ctx: int | None = None
    extra_model_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def llama(cls, name: str, **overrides: Any) -> EmulatedModel:
        """A published Llama 3.x model: family and size from the name (`llama3.2:1b`, ...)."""
        full = normalize_name(name)
        family = family_of(full) or "3.1"
        tag = full.rsplit(":", 1)[1]
        size_key = next((k for k in _SIZES if tag.startswith(k)), _DEFAULT_SIZE[family])
        parameter_size, size = _SIZES[size_key]
        values: dict[str, Any] = {
            "name": full,
            "family": family,
            "parameter_size": parameter_size,
            "size": size,
        }
        values.update(overrides)
        values["name"] = normalize_name(values["name"])
        return cls(**values)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def full_name(self) -> str:
        """The name Ollama uses in capability errors: `registry.ollama.ai/library/x:tag`."""
        if "/" in self.name:
            return self.name
        return f"registry.ollama.ai/library/{self.name}"

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def tags_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": MODIFIED_AT,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def parameters_text(self) -> str:
        # Go's `%-30s %#v` per Modelfile PARAMETER line.
        return "\n".join(f"{'stop':<30} {_go_quote(s)}" for s in self.stop)

    def show(self, *, with_capabilities: bool) -> dict[str, Any]:
        basename = {"3.1": "Meta-Llama-3.1", "3.2": "Llama-3.2", "3.3": "Llama-3.3"}
        model_info: dict[str, Any] = {
            "general.architecture": "llama",
            "general.basename": basename.get(self.family or "", self.name.split(":")[0]),
            "general.file_type": 15,
            "general.parameter_count": _parameter_count(self.parameter_size),
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.block_count": 32,
            "llama.context_length": self.context_length,
            "llama.embedding_length": 4096,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.bos_token_id": 128000,
            "tokenizer.ggml.eos_token_id": 128009,
            "tokenizer.ggml.merges": None,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "llama-bpe",
            "tokenizer.ggml.token_type": None,
            "tokenizer.ggml.tokens": None,
        }
        model_info.update(self.extra_model_info)
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            f"# To build a new Modelfile based on this, replace FROM with:\n# FROM {self.name}\n\n"
            f'FROM /usr/share/ollama/.ollama/models/blobs/sha256-{self.digest}\nTEMPLATE """'
            f'{self.template}"""\n' + "".join(f"PARAMETER stop {s}\n" for s in self.stop)
        )
        payload: dict[str, Any] = {
            "license": "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT",
            "modelfile": modelfile,
            "parameters": self.parameters_text(),
            "template": self.template,
            "details": self.details(),
            "model_info": model_info,
        }
        if self.system:
            payload["system"] = self.system
        if with_capabilities:
            payload["capabilities"] = list(self.capabilities)
        payload["modified_at"] = MODIFIED_AT
        return payload


def _parameter_count(size: str) -> int:
    return int(float(size.rstrip("B")) * 1_000_000_000)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def default_models() -> tuple[EmulatedModel, ...]:
    """`llama3.1:latest`, `llama3.2:latest` and `llama3.3:latest`."""
    return tuple(EmulatedModel.llama(n) for n in ("llama3.1", "llama3.2", "llama3.3"))


def keep_alive_seconds(keep_alive: Any) -> float:
    """How long a model stays loaded: `keep_alive` as Ollama reads it (seconds or "5m")."""
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, int | float):
        return float(keep_alive)
    text = str(keep_alive).strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "h", "m", "s"):
        if text.endswith(unit):
            with contextlib.suppress(ValueError):
                return float(text[: -len(unit)]) * units[unit]
    with contextlib.suppress(ValueError):
        return float(text)
    return 300.0


# --- the chat template ---------------------------------------------------------------------------

_TOOLS_SYSTEM = (
    "When you receive a tool call response, use the output to format an answer to the orginal "
    "user question.\n\nYou are a helpful assistant with tool calling capabilities."
)
_TOOLS_USER = (
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format "
    '{"name": function name, "parameters": dictionary of argument name and its value}. '
    "Do not use variables.\n\n"
)
_HEADER = "<|start_header_id|>{}<|end_header_id|>"


def _collate(
    messages: Sequence[Mapping[str, Any]], model_system: str
) -> tuple[str, list[dict[str, Any]]]:
    systems = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    if model_system and (not messages or messages[0].get("role") != "system"):
        systems.insert(0, model_system)
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("user", "assistant", "tool"):
            continue
        if merged and merged[-1]["role"] == role and role != "tool":
            previous = merged[-1]
            previous["content"] = f"{previous['content']}\n\n{message.get('content') or ''}"
            previous["tool_calls"] = [*previous["tool_calls"], *(message.get("tool_calls") or [])]
            continue
        merged.append(
            {
                "role": role,
                "content": str(message.get("content") or ""),
                "tool_calls": list(message.get("tool_calls") or []),
            }
        )
    return "\n\n".join(systems), merged


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    *,
    family: str | None,
    model_system: str = "",
) -> str:
    """The prompt Ollama's llama3.x template makes of `messages` (without the BOS)."""
    system, turns = _collate(messages, model_system)
    out: list[str] = []
    if family == "3.2":
        out.append(_HEADER.format("system") + "\n\nCutting Knowledge Date: December 2023\n\n")
        if system:
            out.append(system)
        if tools:
            out.append(_TOOLS_SYSTEM)
        out.append("<|eot_id|>")
    elif system or tools:
        out.append(_HEADER.format("system"))
        if system:
            out.append(f"\n\n{system}")
        if tools:
            out.append(f"\n\nCutting Knowledge Date: December 2023\n\n{_TOOLS_SYSTEM}")
        out.append("<|eot_id|>")
    for index, turn in enumerate(turns):
        last = index == len(turns) - 1
        content = turn["content"]
        if turn["role"] == "user":
            out.append(_HEADER.format("user"))
            if tools and last:
                listed = "".join(_go_json(tool) + "\n" for tool in tools)
                question = "" if family == "3.2" else "Question: "
                out.append(f"\n\n{_TOOLS_USER}{listed}\n{question}{content}<|eot_id|>")
            else:
                out.append(f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
        elif turn["role"] == "assistant":
            out.append(_HEADER.format("assistant"))
            if turn["tool_calls"]:
                out.append("\n")
                for call in turn["tool_calls"]:
                    function = call.get("function") or {}
                    arguments = json.dumps(
                        function.get("arguments") or {}, separators=(",", ":"), sort_keys=True
                    )
                    out.append(
                        f'\n{{"name": "{function.get("name", "")}", "parameters": {arguments}}}'
                    )
            else:
                out.append(f"\n\n{content}")
            if not last:
                out.append("<|eot_id|>")
        else:
            out.append(_HEADER.format("ipython") + f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
    return "".join(out)


def _go_json(value: Any) -> str:
    # Go's json.Marshal: compact, and <, > and & escaped.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- scripts and faults --------------------------------------------------------------------------

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
