"""Token and time accounting over a run: one `Usage` per model request, and their total."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from agent.backends import Usage

# Fields of `Usage` that describe one request rather than add up over a run.
_NOT_SUMMED = frozenset({"num_ctx"})


def _total(steps: Iterable[Usage]) -> Usage:
    totals: dict[str, int] = {f.name: 0 for f in fields(Usage)}
    for usage in steps:
        for name in totals:
            value = getattr(usage, name)
            totals[name] = max(totals[name], value) if name in _NOT_SUMMED else totals[name] + value
    return Usage(**totals)


@dataclass(frozen=True, kw_only=True)
class RunUsage:
    """What the server reported for each model request of a run, and the sums.

    `steps[i]` is the `Usage` of request `i + 1`: `prompt_eval_count` (prompt tokens the server
    evaluated; with a warm cache only the new ones), `eval_count` (tokens generated), durations in
    nanoseconds as Ollama reports them, `prompt_tokens_sent` (the runtime's own count) and
    `num_ctx` (the context requested). `total` sums them; its `num_ctx` is the largest requested.
    """

    steps: tuple[Usage, ...] = ()
    total: Usage = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", _total(self.steps))

    @property
    def tokens(self) -> int:
        """Tokens the server evaluated over the run: prompt and generated, all steps."""
        return self.total.prompt_eval_count + self.total.eval_count

    def add(self, usage: Usage) -> RunUsage:
        """A copy with one more request."""
        return RunUsage(steps=(*self.steps, usage))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {"steps": [asdict(u) for u in self.steps], "total": asdict(self.total)}
