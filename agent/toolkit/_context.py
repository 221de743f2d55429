"""Per-run dependencies handed to tools that ask for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, kw_only=True)
class RunContext(Generic[DepsT]):
    """What the runtime injects into a tool parameter annotated `RunContext[...]`.

    The parameter is never shown to the model. `deps` is whatever the program passed to
    `Agent.run(..., deps=...)`: a database handle, the user id, an HTTP client.
    """

    deps: DepsT
    run_id: str = ""
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
