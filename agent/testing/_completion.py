"""`/api/generate` and `/api/chat` on the emulator: validation, prompt cache, script, stream."""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from agent.llama3 import common_prefix_length
from agent.testing._chat import render_chat
from agent.testing._faults import Busy, DropConnection, Fault, ServerError
from agent.testing._generation import run_generation
from agent.testing._http import HttpRequest, Responder
from agent.testing._models import EmulatedModel
from agent.testing._records import RecordedRequest
from agent.testing._scripts import ScriptRequest
from agent.testing._shaping import continue_output, pseudo_ids, shape
from agent.testing._streaming import Progress, created_at, send
from agent.testing._validate import Reject, validate

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

Endpoint = Literal["generate", "chat"]


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
        emu.record(
            RecordedRequest(method=request.method, path=request.path, status=400, error=message)
        )
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


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    model: EmulatedModel
    name: str
    prompt: str
    num_ctx: int
    stream: bool


async def handle(
    emu: OllamaEmulator, request: HttpRequest, responder: Responder, *, endpoint: Endpoint
) -> None:
    started = time.perf_counter_ns()
    body = await read_body(emu, request, responder)
    if body is None:
        return
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    index = emu.record(
        RecordedRequest(
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
    )
    try:
        await _respond(emu, index, body, responder, endpoint=endpoint, started=started)
    except Reject as reject:
        emu.update(index, status=reject.status, error=reject.message, finished=True)
        await responder.json(reject.status, {"error": reject.message})
    finally:
        if responder.client_gone.is_set() and not emu.recorded(index).finished:
            emu.update(index, cancelled=True)


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
    fault = emu.take_fault(f"/api/{endpoint}")
    if fault is not None:
        emu.update(index, fault=fault)
    if isinstance(fault, Busy):
        raise Reject(503, fault.message)
    if isinstance(fault, ServerError):
        raise Reject(fault.status, fault.message)
    if isinstance(fault, DropConnection) and fault.after_chunks <= 0:
        emu.update(index, error="connection dropped (fault)", finished=True)
        await responder.hang_up()
        return
    gate = emu.gate
    if gate is None:
        await _complete(emu, index, body, responder, model, name, endpoint, fault, started)
        return
    if emu.waiting >= emu.max_queue:
        raise Reject(503, Busy().message)
    emu.waiting += 1
    try:
        await gate.acquire()
    finally:
        emu.waiting -= 1
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
    if emu.mark_loaded(model, num_ctx, body.get("keep_alive")):
        emu.update(index, reloaded=True)
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
    emu.update(
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
        index=emu.script_calls,
    )
    emu.script_calls += 1
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
        if emu.mark_loaded(model, num_ctx, keep_alive):
            await anyio.sleep(emu.load_delay)
        reason = "load"
    payload: dict[str, Any] = {"model": name, "created_at": created_at()}
    if endpoint == "chat":
        payload["message"] = {"role": "assistant", "content": ""}
    else:
        payload["response"] = ""
    payload.update({"done": True, "done_reason": reason})
    emu.update(index, done_reason=reason, finished=True, num_ctx=num_ctx)
    await responder.json(200, payload)
