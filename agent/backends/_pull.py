"""Streaming `ollama pull` progress, with a deadline between progress lines."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import anyio
import ollama

from agent.backends._config import PullProgress
from agent.backends._stream import closing_iterator
from agent.backends._translate import FOREIGN_ERRORS
from agent.errors import BackendError, BackendResponseError, BackendTimeoutError


async def stream_pull(
    client: ollama.AsyncClient,
    *,
    model: str,
    url: str,
    between_chunks: float | None,
    translate_other: Callable[..., BackendError],
) -> AsyncGenerator[PullProgress, None]:
    """Yield each progress line of pulling `model`; errors come out as the project's."""
    stream = await client.pull(model, stream=True)
    async with closing_iterator(stream):
        while True:
            try:
                with anyio.fail_after(between_chunks):
                    part = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise BackendTimeoutError(
                    f"pulling {model} from {url}: no progress for {between_chunks} s"
                ) from exc
            except ollama.ResponseError as exc:
                raise BackendResponseError(
                    f"Ollama at {url} could not pull '{model}': {exc.error}. Check the "
                    "name and tag against the Ollama library.",
                    status_code=exc.status_code,
                ) from exc
            except FOREIGN_ERRORS as exc:
                raise translate_other(exc, model=model, what="pull") from exc
            yield PullProgress(
                status=str(part.status or ""),
                digest=part.digest,
                total=part.total,
                completed=part.completed,
            )
