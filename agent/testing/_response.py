"""From a script's output to what Ollama sends back: generation, tool calls, the NDJSON stream.

The script writes what the model *generates*, Llama-native, end tokens included:
`'<|python_tag|>{"name": "f", "parameters": {}}<|eom_id|>'`. Ollama never returns end-of-generation
text, so the emulator does what the server does (PROTOCOL.md §1.5, §6):

* the first `<|eot_id|>`, `<|eom_id|>` or `<|end_of_text|>` ends the generation; neither it nor
  anything after it is sent, and `done_reason` is `"stop"` (eom and eot look the same);
* other control tokens (`<|python_tag|>`, a stray `<|start_header_id|>`) are sent as text by the
  `llamarunner` engine (Ollama ≤ 0.29) and as empty text by `llama-server` (≥ 0.30, raw mode);
* stop strings (the Modelfile's, or `options.stop`, which replaces them) cut the text before the
  first match; the match is not sent; `done_reason` is `"stop"`;
* `num_predict` caps the tokens; reaching it gives `done_reason` `"length"`;
* a script text with no end token ends as if `<|eot_id|>` followed it.

Through `/api/chat`, tool calls are parsed from the output with Ollama's v0.8+ rules (§2.4). The
answer then goes out as NDJSON lines with Ollama's timings, or as one JSON object, and an
injected fault (`agent.testing._model`) breaks it at its chunk.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from agent.testing._http import Responder
from agent.testing._model import DropConnection, Endpoint, ErrorLine, Fault, GarbageLine, Stall

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

# --- generation -----------------------------------------------------------------------------------

Engine = Literal["llamarunner", "llama-server"]

SPECIAL_RE = re.compile(r"<\|[a-z_0-9]+\|>")
EOG_TOKENS = frozenset({"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"})
# An approximation of Llama 3's pre-tokenizer (no \p{L} in `re`): word pieces with their leading
# space, digit triples, punctuation runs, newlines. One piece per streamed chunk, like Ollama.
_PIECE_RE = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+|[\s\S]"
)


def split_tokens(text: str) -> list[str]:
    """Split into token-like pieces; each special token is one piece."""
    pieces: list[str] = []
    position = 0
    for match in SPECIAL_RE.finditer(text):
        pieces.extend(_PIECE_RE.findall(text[position : match.start()]))
        pieces.append(match.group())
        position = match.end()
    pieces.extend(_PIECE_RE.findall(text[position:]))
    return pieces


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What to stream for one request."""

    chunks: tuple[str, ...]
    done_reason: Literal["stop", "length"]
    eval_count: int
    generated: str  # the generated tokens as text (control tokens included): the KV cache's view
    chunk_ends: tuple[int, ...] = ()  # where each chunk's tokens end in `generated`

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def generated_through(self, chunks: int) -> str:
        """The generated text once the first `chunks` chunks were produced (what the server's
        cache holds when the stream stops there)."""
        if chunks >= len(self.chunks):
            return self.generated
        return self.generated[: self.chunk_ends[chunks - 1]] if chunks > 0 else ""


def run_generation(
    output: str | Sequence[str],
    *,
    engine: Engine,
    stop: Sequence[str],
    num_predict: int | None,
    chunk_chars: int | None,
) -> Generation:
    """Apply end tokens, control-token rendering, stop strings and `num_predict` to `output`."""
    if isinstance(output, str):
        tokens = split_tokens(output)
    else:
        tokens = [p for piece in output for p in _split_specials(piece)]
    limit = num_predict if num_predict is not None and num_predict > 0 else None

    generated: list[str] = []
    rendered: list[str] = []
    done_reason: Literal["stop", "length"] = "stop"
    hit_eog = False
    for token in tokens:
        if limit is not None and len(generated) >= limit:
            done_reason = "length"
            break
        if token in EOG_TOKENS:
            hit_eog = True
            break
        generated.append(token)
        control = token.startswith("<|") and SPECIAL_RE.fullmatch(token) is not None
        rendered.append("" if control and engine == "llama-server" else token)

    cut = _first_stop(rendered, stop)
    eval_count = len(generated) + (1 if hit_eog else 0)
    if cut is not None:
        index, offset = cut
        kept = [*rendered[:index], rendered[index][:offset]]
        generated = generated[: index + 1]
        done_reason = "stop"
        eval_count = index + 1
        rendered = kept
    offsets = [0]
    for token in generated:
        offsets.append(offsets[-1] + len(token))
    grouped = [(c, end) for c, end in _group(rendered, chunk_chars) if c]
    return Generation(
        chunks=tuple(c for c, _ in grouped),
        done_reason=done_reason,
        eval_count=max(eval_count, 1),
        generated="".join(generated),
        chunk_ends=tuple(offsets[min(end, len(generated))] for _, end in grouped),
    )


def _split_specials(piece: str) -> list[str]:
    parts: list[str] = []
    position = 0
    for match in SPECIAL_RE.finditer(piece):
        if match.start() > position:
            parts.append(piece[position : match.start()])
        parts.append(match.group())
        position = match.end()
    if position < len(piece):
        parts.append(piece[position:])
    return parts


def _first_stop(rendered: list[str], stop: Sequence[str]) -> tuple[int, int] | None:
    """(token index, offset in it) where the earliest stop string starts, if any."""
    text = "".join(rendered)
    positions = [text.find(s) for s in stop if s]
    found = [p for p in positions if p >= 0]
    if not found:
        return None
    at = min(found)
    consumed = 0
    for index, piece in enumerate(rendered):
        if at < consumed + len(piece) or (at == consumed and not piece):
            return index, at - consumed
        consumed += len(piece)
    return len(rendered) - 1, len(rendered[-1])


def _group(pieces: list[str], chunk_chars: int | None) -> list[tuple[str, int]]:
    """Chunks of `pieces`, each with the index just after its last piece."""
    if not chunk_chars or chunk_chars <= 0:
        return [(piece, index + 1) for index, piece in enumerate(pieces)]
    chunks: list[tuple[str, int]] = []
    current = ""
    for index, piece in enumerate(pieces):
        current += piece
        if len(current) >= chunk_chars:
            chunks.append((current, index + 1))
            current = ""
    if current:
        chunks.append((current, len(pieces)))
    return chunks


# --- tool calls ----------------------------------------------------------------------------------


def call_id() -> str:
    """`call_` and 8 characters from [a-z0-9], like Ollama ≥ 0.12.10."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def parse_tool_calls(
    text: str, tool_names: Sequence[str], *, gate: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    """Ollama's tool parser (v0.8+): the calls it finds in `text`, [] when it finds none.

    With `gate`, parsing happens only when the first non-blank character is `{` (the llama3.1
    template's tag). The name is the first declared tool name found anywhere in the buffer (the
    longest on a tie); arguments come from `arguments` or `parameters` (object or JSON string).
    Whatever follows the last call is dropped, as on the real server (ollama/ollama#17323).
    """
    buffer = text.lstrip()
    if gate and not buffer.startswith("{"):
        return []
    decoder = json.JSONDecoder()
    calls: list[tuple[str, dict[str, Any]]] = []
    while buffer:
        name = _find_tool(buffer, tool_names)
        start = buffer.find("{")
        if name is None or start < 0:
            break
        parsed = _first_object(decoder, buffer, start)
        if parsed is None:
            break
        obj, end = parsed
        arguments = _arguments(obj, name)
        if arguments is None:
            break
        calls.append((name, arguments))
        buffer = buffer[end:].lstrip(" \t\r\n;,")
    return calls


def _find_tool(buffer: str, names: Sequence[str]) -> str | None:
    best: tuple[int, int, str] | None = None
    for name in names:
        at = buffer.find(name) if name else -1
        if at >= 0 and (best is None or (at, -len(name)) < (best[0], best[1])):
            best = (at, -len(name), name)
    return best[2] if best else None


def _first_object(
    decoder: json.JSONDecoder, buffer: str, start: int
) -> tuple[dict[str, Any], int] | None:
    position = start
    while position >= 0:
        try:
            obj, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            position = buffer.find("{", position + 1)
            continue
        if isinstance(obj, dict):
            return obj, end
        position = buffer.find("{", end)
    return None


def _arguments(obj: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = obj.get("arguments", obj.get("parameters")) if "name" in obj else obj.get(name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


# --- response payloads ---------------------------------------------------------------------------

_SPECIAL_IDS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}


def continue_output(output: str | Sequence[str], partial: str) -> str | Sequence[str]:
    """A deterministic model continues its own text: drop what the prompt already holds."""
    if not partial:
        return output
    if isinstance(output, str):
        return output.removeprefix(partial)
    if not "".join(output).startswith(partial):
        return output
    pieces, skip = [], len(partial)
    for piece in output:
        if skip >= len(piece):
            skip -= len(piece)
            continue
        pieces.append(piece[skip:])
        skip = 0
    return pieces


def shape(
    emu: OllamaEmulator,
    endpoint: Endpoint,
    generation: Generation,
    tools: Sequence[Mapping[str, Any]],
    *,
    stream: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The non-final payloads, the tool calls found, and the text the final chunk carries."""
    if endpoint == "generate":
        return [{"response": c} for c in generation.chunks], [], ""
    names = [str((t.get("function") or {}).get("name", "")) for t in tools]
    text = generation.text
    calls: list[tuple[str, dict[str, Any]]] = []
    held = False
    if tools:
        if emu.version_at_least(0, 8):
            calls = parse_tool_calls(text, names)
            held = text.lstrip().startswith("{")
        elif emu.version_at_least(0, 4, 6):
            calls = parse_tool_calls(text, names, gate=False)
            held = True
        elif not stream:
            calls = parse_tool_calls(text, names, gate=False)
    if calls:
        tool_calls = [_tool_call(emu, i, n, a) for i, (n, a) in enumerate(calls)]
        message = {"role": "assistant", "content": "", "tool_calls": tool_calls}
        return [{"message": message}], tool_calls, ""
    if held:
        return [], [], text
    return [{"message": {"role": "assistant", "content": c}} for c in generation.chunks], [], ""


def _tool_call(
    emu: OllamaEmulator, index: int, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if emu.version_at_least(0, 12, 6) or (index and emu.version_at_least(0, 4, 7)):
        function["index"] = index
    function["name"] = name
    function["arguments"] = arguments
    call: dict[str, Any] = {}
    if emu.version_at_least(0, 12, 10):
        call["id"] = call_id()
    call["function"] = function
    return call


def pseudo_ids(text: str) -> list[int]:
    # Placeholder token ids for the deprecated `context` field: stable, one per token-like piece.
    pieces = ["<|begin_of_text|>", *split_tokens(text)]
    return [_SPECIAL_IDS.get(p, zlib.crc32(p.encode()) % 128000) for p in pieces]


# --- writing the response ------------------------------------------------------------------------

NDJSON = "application/x-ndjson"


def created_at() -> str:
    """RFC 3339 with sub-second precision and trailing zeros trimmed, as Go prints it."""
    text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return f"{text}Z"


def line(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass
class Progress:
    """How much of a response got out (mutable: `send` advances it as it writes)."""

    chunks: int = 0  # non-final lines written
    complete: bool = False  # the final line (or the whole answer) written


class _Stream:
    """One streamed response: lazily started, faults applied at their chunk position."""

    def __init__(
        self, emu: OllamaEmulator, index: int, responder: Responder, fault: Fault | None
    ) -> None:
        self.emu = emu
        self.index = index
        self.responder = responder
        self.fault = fault

    async def write(self, payload: bytes, *, end: bool = False) -> None:
        if not self.responder.started:
            await self.responder.start(200, NDJSON)
        await self.responder.write(payload, end=end)

    async def fault_at(self, position: int, *, last: bool) -> bool:
        """Apply the fault due at `position`; True when the stream is over."""
        fault = self.fault
        after = getattr(fault, "after_chunks", None)
        if fault is None or after is None or not (after == position or (last and after > position)):
            return False
        if isinstance(fault, Stall):
            await _stall(fault)
        elif isinstance(fault, GarbageLine):
            await self.write(fault.line.encode() + b"\n")
        elif isinstance(fault, ErrorLine):
            self.emu._update(self.index, error=fault.message, finished=True)
            await self.write(line({"error": fault.message}), end=True)
            return True
        elif isinstance(fault, DropConnection):
            self.emu._update(self.index, error="connection dropped (fault)", finished=True)
            if self.responder.started:
                await self.responder.abort(b'{"model":"')
            else:
                await self.responder.hang_up()
            return True
        return False


async def _stall(fault: Stall) -> None:
    if fault.seconds is None:
        await anyio.sleep_forever()
    else:
        await anyio.sleep(fault.seconds)


def _metrics(
    timing: Mapping[str, int], counts: tuple[int, int], prompt_ns: int, eval_ns: int
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "total_duration": time.perf_counter_ns() - timing["started"],
        "load_duration": timing["load"],
    }
    # Go's `omitempty`: a zero count is left out.
    if counts[0]:
        metrics["prompt_eval_count"] = counts[0]
    metrics["prompt_eval_duration"] = prompt_ns
    if counts[1]:
        metrics["eval_count"] = counts[1]
    metrics["eval_duration"] = eval_ns
    return metrics


async def send(
    emu: OllamaEmulator,
    index: int,
    responder: Responder,
    *,
    endpoint: Endpoint,
    base: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]],
    final: Mapping[str, Any],
    final_content: str,
    stream: bool,
    fault: Fault | None,
    timing: Mapping[str, int],
    counts: tuple[int, int],
    completion: str,
    tool_calls: Sequence[Mapping[str, Any]],
    progress: Progress,
) -> None:
    """Send the completion: streamed lines then the final one, or one JSON object."""
    interval = 1.0 / emu.token_rate if emu.token_rate else 0.0
    out = _Stream(emu, index, responder, fault)
    prompt_start = time.perf_counter_ns()
    await anyio.sleep(emu.latency)  # prompt evaluation: nothing is sent before the first token
    prompt_ns = max(time.perf_counter_ns() - prompt_start, 1)
    eval_start = time.perf_counter_ns()
    record = {
        "prompt_eval_count": counts[0],
        "eval_count": counts[1],
        "completion": completion,
        "done_reason": final["done_reason"],
        "tool_calls": tuple(tool_calls),
    }
    if not stream:
        await anyio.sleep(interval * max(len(chunks) - 1, 0))
        progress.complete = await _whole(
            emu,
            index,
            out,
            endpoint,
            base,
            final,
            final_content,
            completion,
            tool_calls,
            timing,
            counts,
            prompt_ns,
            eval_start,
            record,
        )
        return
    for position, payload in enumerate(chunks):
        if position:
            await anyio.sleep(interval)
        if await out.fault_at(position, last=False):
            return
        await out.write(line({**base, "created_at": created_at(), **payload, "done": False}))
        progress.chunks += 1
    if await out.fault_at(len(chunks), last=True):
        return
    eval_ns = max(time.perf_counter_ns() - eval_start, 1)
    last: dict[str, Any] = {**base, "created_at": created_at()}
    if endpoint == "chat":
        last["message"] = {"role": "assistant", "content": final_content}
    else:
        last["response"] = ""
    last.update(final)
    last.update(_metrics(timing, counts, prompt_ns, eval_ns))
    emu._update(index, finished=True, **record)
    await out.write(line(last), end=True)
    progress.complete = True


async def _whole(
    emu: OllamaEmulator,
    index: int,
    out: _Stream,
    endpoint: str,
    base: Mapping[str, Any],
    final: Mapping[str, Any],
    final_content: str,
    completion: str,
    tool_calls: Sequence[Mapping[str, Any]],
    timing: Mapping[str, int],
    counts: tuple[int, int],
    prompt_ns: int,
    eval_start: int,
    record: dict[str, Any],
) -> bool:
    """The answer as one JSON object (or the fault instead); True when the answer went out."""
    fault = out.fault
    if isinstance(fault, Stall):
        await _stall(fault)
    elif isinstance(fault, DropConnection):
        emu._update(index, error="connection dropped (fault)", finished=True)
        await out.responder.hang_up()
        return False
    elif isinstance(fault, ErrorLine):
        emu._update(index, status=500, error=fault.message, finished=True)
        await out.responder.json(500, {"error": fault.message})
        return False
    elif isinstance(fault, GarbageLine):
        emu._update(index, error="garbage body (fault)", finished=True)
        await out.responder.respond(200, "application/json; charset=utf-8", fault.line.encode())
        return False
    payload: dict[str, Any] = {**base, "created_at": created_at()}
    if endpoint == "chat":
        content = final_content or ("" if tool_calls else completion)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = list(tool_calls)
        payload["message"] = message
    else:
        payload["response"] = completion
    payload.update(final)
    payload.update(_metrics(timing, counts, prompt_ns, max(time.perf_counter_ns() - eval_start, 1)))
    emu._update(index, finished=True, **record)
    await out.responder.json(200, payload)
    return True
