"""`/api/pull` on the emulator (PROTOCOL.md §3.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from agent.testing import _completion
from agent.testing._http import HttpRequest, Responder
from agent.testing._records import RecordedRequest
from agent.testing._streaming import line

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator


async def pull(emu: OllamaEmulator, request: HttpRequest, responder: Responder) -> None:
    """`POST /api/pull`: NDJSON progress, or the in-band error for an unknown model."""
    body = await _completion.read_body(emu, request, responder)
    if body is None:
        return
    name = str(body.get("model") or body.get("name") or "")
    stream = body.get("stream", True) is not False
    model = emu.find_model(name) or emu.pullable_model(name)
    index = emu.record(
        RecordedRequest(method="POST", path=request.path, body=body, model=name, stream=stream)
    )
    if model is None:
        error = "pull model manifest: file does not exist"
        emu.update(index, error=error, status=200 if stream else 500)
        if stream:
            await responder.start(200, "application/x-ndjson")
            await responder.write(line({"status": "pulling manifest"}))
            await responder.write(line({"error": error}))
            await responder.end()
        else:
            await responder.json(500, {"error": error})
        return
    digest = f"sha256:{model.digest}"
    statuses: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    for step in range(5):
        statuses.append(
            {
                "status": f"pulling {model.digest[:12]}",
                "digest": digest,
                "total": model.size,
                "completed": model.size * step // 4,
            }
        )
    statuses += [
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    emu.add_model(model)
    emu.update(index, finished=True)
    if not stream:
        await responder.json(200, statuses[-1])
        return
    await responder.start(200, "application/x-ndjson")
    for status in statuses:
        await responder.write(line(status))
        await anyio.sleep(emu.latency / len(statuses))
    await responder.end()
