"""`/api/generate` and `/api/chat` on the emulator: validation, prompt cache, script, answer.

A request is checked the way Ollama checks it (its status codes and messages, PROTOCOL.md §3.2),
rendered into the prompt the model sees, counted against the emulated prompt (KV) cache, played
by the script, and answered by `agent.testing._response`.

Counting the prompt costs only what is new since a recent prompt of the model. The emulator
counts every prompt (its `prompt_eval_count`, its truncation) and the part of it that the
emulated KV cache holds. A conversation sends a slightly longer prompt at every step, so counting
each prompt whole costs each step more than the step before, and a benchmark of many runs ends up
measuring the emulator's tokenizer. `PromptCounter` keeps, for the last few prompts of each model,
the token count at the end of every special token in them (*marks*). A new prompt starts from the
longest of those prompts it begins with (usually its own conversation's previous step): the marks
up to there are reused, and only the text after them is tokenized. The count of any prefix (the
cached part) is then the count at the last mark before its end plus the few characters after
that mark.

Exact, not an estimate (`agent.llama3._special`): Llama 3's `count_tokens` splits the text at
special tokens and counts the pieces on their own, as llama.cpp does (no BPE merge crosses a
special token), so with the exact tokenizer count(a + b) == count(a) + count(b) whenever `a`
ends with a special token. Any other counter (the estimate used without the `tokenizer` extra,
which rounds once over the whole text, or one a test passes in) is not additive that way: it is
called on each whole text instead, so its counts stay what it says they are, just slower.
"""

from __future__ import annotations

import inspect
import json
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from agent.llama3 import common_prefix_length, count_tokens, special_token_spans, tokenizer_is_exact
from agent.testing._http import HttpRequest, Responder
from agent.testing._model import (
    Busy,
    DropConnection,
    EmulatedModel,
    Endpoint,
    Fault,
    ScriptRequest,
    ServerError,
    render_chat,
)
from agent.testing._response import (
    Progress,
    continue_output,
    created_at,
    pseudo_ids,
    run_generation,
    send,
    shape,
)

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

# --- the request ----------------------------------------------------------------------------------


async def read_body(
    emu: OllamaEmulator, request: HttpRequest, responder: Responder
) -> dict[str, Any] | None:
    """The JSON body, or None after answering 400 the way Ollama does."""
    message = None
    body: Any = None
    if not request.body.strip():
        message = "missing request body"
    else:
        try:
            body = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            message = _go_json_error(request.body, exc)
        else:
            if not isinstance(body, dict):
                kind = "array" if isinstance(body, list) else type(body).__name__
                message = f"json: cannot unmarshal {kind} into Go value of type api.Request"
    if message is not None:
        emu._record(method=request.method, path=request.path, status=400, error=message)
        await responder.json(400, {"error": message})
        return None
    assert isinstance(body, dict)
    return body


def _go_json_error(raw: bytes, exc: ValueError) -> str:
    position = getattr(exc, "pos", 0)
    text = raw.decode("utf-8", "replace")
    if position >= len(text.rstrip()):
        return "unexpected EOF"
    return f"invalid character '{text[position]}' looking for beginning of value"


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


# --- counting the prompt -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CountedPrompt:
    """A prompt, its token count (no BOS), and the counts at the end of its special tokens."""

    text: str
    total: int
    marks: tuple[int, ...]  # 0, then the position just after each special token
    counts: tuple[int, ...]  # tokens in text[:mark], per mark
    count: Callable[[str], int]

    def prefix(self, length: int) -> int:
        """Tokens in `text[:length]`, counting only the characters after the last mark."""
        if length >= len(self.text):
            return self.total
        index = bisect_right(self.marks, length) - 1
        mark = self.marks[index]
        return self.counts[index] + (self.count(self.text[mark:length]) if length > mark else 0)


class PromptCounter:
    """Counts the prompts of each model, reusing the counts of its last `depth` prompts.

    `count`: the token counter (None: Llama 3's `count_tokens`, incremental when it is exact).
    """

    def __init__(self, count: Callable[[str], int] | None = None, *, depth: int = 8) -> None:
        self.counts_with = count or count_tokens
        self._default = self.counts_with is count_tokens
        self._depth = depth
        self._recent: dict[str, deque[CountedPrompt]] = {}
        self.counted_chars = 0  # characters actually tokenized, for tests and benchmarks

    def _counter(self, text: str) -> int:
        self.counted_chars += len(text)
        return self.counts_with(text)

    def count(self, model: str, prompt: str) -> CountedPrompt:
        """Count `prompt` (without the BOS the server adds)."""
        if not (self._default and tokenizer_is_exact()):
            total = self._counter(prompt)
            return CountedPrompt(
                text=prompt, total=total, marks=(0,), counts=(0,), count=self._counter
            )
        recent = self._recent.setdefault(model, deque(maxlen=self._depth))
        base = _best_start(recent, prompt)
        if base is None:
            marks, counts, start = [0], [0], 0
        else:
            reach = common_prefix_length(base.text, prompt)
            keep = bisect_right(base.marks, reach)
            marks, counts = list(base.marks[:keep]), list(base.counts[:keep])
            start = marks[-1]
        total = counts[-1]
        position = start
        for opening, end in special_token_spans(prompt, start):
            if opening > position:
                total += self._counter(prompt[position:opening])
            total += 1
            position = end
            marks.append(position)
            counts.append(total)
        if position < len(prompt):
            total += self._counter(prompt[position:])
        counted = CountedPrompt(
            text=prompt,
            total=total,
            marks=tuple(marks),
            counts=tuple(counts),
            count=self._counter,
        )
        recent.append(counted)
        return counted

    def forget(self) -> None:
        self._recent.clear()


def _best_start(recent: deque[CountedPrompt], prompt: str) -> CountedPrompt | None:
    """The longest recent prompt that `prompt` starts with; else the newest (shares a prefix)."""
    best: CountedPrompt | None = None
    for counted in recent:
        if len(counted.text) > (len(best.text) if best else -1) and prompt.startswith(counted.text):
            best = counted
    if best is None and recent:
        return recent[-1]
    return best


# --- the completion ------------------------------------------------------------------------------


async def handle(
    emu: OllamaEmulator, request: HttpRequest, responder: Responder, *, endpoint: Endpoint
) -> None:
    started = time.perf_counter_ns()
    body = await read_body(emu, request, responder)
    if body is None:
        return
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    index = emu._record(
        method=request.method,
        path=request.path,
        body=body,
        headers=dict(request.headers),
        model=body.get("model"),
        raw=bool(body.get("raw", False)),
        stream=body.get("stream", True) is not False,
        options=dict(options or {}),
        keep_alive=body.get("keep_alive"),
    )
    try:
        await _respond(emu, index, body, responder, endpoint=endpoint, started=started)
    except Reject as reject:
        emu._update(index, status=reject.status, error=reject.message, finished=True)
        await responder.json(reject.status, {"error": reject.message})
    finally:
        record = emu._recorded(index)
        if responder.client_gone.is_set() and record is not None and not record.finished:
            emu._update(index, cancelled=True)


async def _respond(
    emu: OllamaEmulator,
    index: int,
    body: dict[str, Any],
    responder: Responder,
    *,
    endpoint: Endpoint,
    started: int,
) -> None:
    model = validate(emu, body, endpoint)
    name = str(body.get("model", body.get("name")))
    fault = emu._take_fault(f"/api/{endpoint}")
    if fault is not None:
        emu._update(index, fault=fault)
    if isinstance(fault, Busy):
        raise Reject(503, fault.message)
    if isinstance(fault, ServerError):
        raise Reject(fault.status, fault.message)
    if isinstance(fault, DropConnection) and fault.after_chunks <= 0:
        emu._update(index, error="connection dropped (fault)", finished=True)
        await responder.hang_up()
        return
    gate = emu._gate
    if gate is None:
        await _complete(emu, index, body, responder, model, name, endpoint, fault, started)
        return
    if emu._waiting >= emu.max_queue:
        raise Reject(503, Busy().message)
    emu._waiting += 1
    try:
        await gate.acquire()
    finally:
        emu._waiting -= 1
    try:
        await _complete(emu, index, body, responder, model, name, endpoint, fault, started)
    finally:
        gate.release()


async def _complete(
    emu: OllamaEmulator,
    index: int,
    body: dict[str, Any],
    responder: Responder,
    model: EmulatedModel,
    name: str,
    endpoint: Endpoint,
    fault: Fault | None,
    started: int,
) -> None:
    options: dict[str, Any] = dict(body.get("options") or {})
    stream = body.get("stream", True) is not False
    raw = endpoint == "generate" and bool(body.get("raw"))
    num_ctx = int(options.get("num_ctx") or min(emu.default_num_ctx, model.context_length))
    num_ctx = min(num_ctx, model.max_num_ctx or num_ctx)
    messages: list[dict[str, Any]] = [
        {**m, "role": str(m.get("role", "")).lower()} for m in body.get("messages") or []
    ]
    tools: list[dict[str, Any]] = list(body.get("tools") or [])
    empty = not messages if endpoint == "chat" else not body.get("prompt")
    if empty:
        await _load_only(emu, index, body, responder, model, name, endpoint, num_ctx, started)
        return
    if emu._mark_loaded(model, num_ctx, body.get("keep_alive")):
        emu._update(index, reloaded=True)
        await anyio.sleep(emu.load_delay)
    load_ns = max(time.perf_counter_ns() - started, 1)

    if endpoint == "chat":
        prompt = render_chat(messages, tools, family=model.family, model_system=model.system)
    elif raw:
        prompt = str(body["prompt"])
    else:
        system = body.get("system") or model.system
        turns = [{"role": "system", "content": system}] if system else []
        turns.append({"role": "user", "content": body["prompt"]})
        prompt = render_chat(turns, [], family=model.family)

    counted = emu.prompt_counter.count(model.name, prompt)
    total_tokens = 1 + counted.total  # Ollama's runner adds the BOS
    truncated = total_tokens > num_ctx
    if truncated:
        if body.get("truncate") is False and emu.version_at_least(0, 12, 6):
            raise Reject(400, "the input length exceeds the context length")
        if emu.engine == "llamarunner":
            prompt_eval_count = num_ctx
        else:
            prompt_eval_count = num_ctx - max((num_ctx - 5) // 2, 1)
        cached = 0
    else:
        previous = emu.cache.get(model.name)
        cached = 0
        if previous is not None:
            common = common_prefix_length(previous, prompt)
            # The BOS is always shared; llama.cpp re-evaluates at least the last prompt token.
            cached = min(1 + counted.prefix(common), total_tokens - 1)
        prompt_eval_count = total_tokens - cached
    emu._update(
        index,
        prompt=prompt,
        num_ctx=num_ctx,
        prompt_tokens=total_tokens,
        cached_tokens=cached,
        truncated=truncated,
    )

    request = ScriptRequest(
        endpoint=endpoint,
        model=name,
        prompt=prompt,
        raw=raw,
        options=options,
        system=body.get("system"),
        messages=messages,
        tools=tools,
        index=emu._script_calls,
    )
    emu._script_calls += 1
    try:
        output = emu.script(request)
        if inspect.isawaitable(output):
            output = await output
    except Exception as exc:  # a failing script is the test's bug: make it loud, as a 500
        raise Reject(500, f"emulator script failed: {type(exc).__name__}: {exc}") from exc
    output = continue_output(output, request.partial)
    stop = options["stop"] if "stop" in options else list(model.stop)
    generation = run_generation(
        output,
        engine=emu.engine,
        stop=[str(s) for s in stop or []],
        num_predict=options.get("num_predict"),
        chunk_chars=emu.chunk_chars,
    )
    held = prompt + generation.generated
    emu.cache[model.name] = held  # now, so a concurrent request sees it as Ollama's would

    chunks, tool_calls, final_content = shape(emu, endpoint, generation, tools, stream=stream)
    base = {"model": name}
    final: dict[str, Any] = {"done": True, "done_reason": generation.done_reason}
    if endpoint == "generate" and not raw:
        final["context"] = pseudo_ids(prompt + generation.text)
    progress = Progress()
    try:
        await send(
            emu,
            index,
            responder,
            endpoint=endpoint,
            base=base,
            chunks=chunks,
            final=final,
            final_content=final_content,
            stream=stream,
            fault=fault,
            timing={"load": load_ns, "started": started},
            counts=(prompt_eval_count, generation.eval_count),
            completion=generation.text,
            tool_calls=tool_calls,
            progress=progress,
        )
    finally:
        if not progress.complete and emu.cache.get(model.name) is held:
            # Cancelled, dropped or failed part way: the model generated only what went out
            # (when lines map to chunks), so that is all its cache can hold.
            if len(chunks) == len(generation.chunks):
                generated = generation.generated_through(progress.chunks)
            else:  # tool calls: one line after the whole generation
                generated = generation.generated if progress.chunks else ""
            emu.cache[model.name] = prompt + generated


async def _load_only(
    emu: OllamaEmulator,
    index: int,
    body: dict[str, Any],
    responder: Responder,
    model: EmulatedModel,
    name: str,
    endpoint: Endpoint,
    num_ctx: int,
    started: int,
) -> None:
    keep_alive = body.get("keep_alive")
    if keep_alive in (0, "0", "0s", "0m"):
        emu.loaded.pop(model.name, None)
        reason = "unload"
    else:
        if emu._mark_loaded(model, num_ctx, keep_alive):
            await anyio.sleep(emu.load_delay)
        reason = "load"
    payload: dict[str, Any] = {"model": name, "created_at": created_at()}
    if endpoint == "chat":
        payload["message"] = {"role": "assistant", "content": ""}
    else:
        payload["response"] = ""
    payload.update({"done": True, "done_reason": reason})
    emu._update(index, done_reason=reason, finished=True, num_ctx=num_ctx)
    await responder.json(200, payload)
