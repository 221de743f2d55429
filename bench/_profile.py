"""Where the time goes: cProfile results, cut down to what points at a culprit.

`hot_paths` lists the project's functions (`agent/`, `tools/`) and the first foreign function
each of them calls (the ollama client, httpx, jsonschema, tiktoken...) whose cumulative time is
a noticeable share of the whole, so a missed goal names `file:function`.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

_OURS = ("/agent/", "/tools/")


def _ours(filename: str) -> bool:
    return any(part in filename for part in _OURS) and "/site-packages/" not in filename


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    for marker in _OURS:
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return filename.rsplit("/lib/", 1)[-1]


def hot_paths(profiler: cProfile.Profile, *, min_share: float = 0.03, limit: int = 30) -> str:
    """A table of the project's (and its direct callees') functions by share of total time."""
    stats = pstats.Stats(profiler)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    rows = []
    for func, (_, _, own, cumulative, callers) in table.items():
        filename, line, name = func
        ours = _ours(filename)
        # Builtins ("~") are left out: `str.join` says nothing about who is to blame.
        boundary = not ours and filename != "~" and any(_ours(c[0]) for c in callers)
        if (ours or boundary) and total and cumulative / total >= min_share:
            rows.append((cumulative, own, f"{_short(filename)}:{line} {name}", ours))
    rows.sort(reverse=True)
    lines = [
        f"total profiled: {total:.2f} s (profiler overhead included)",
        "cumulative    own  function (* = outside the project, called from it)",
    ]
    for cumulative, own, where, ours in rows[:limit]:
        lines.append(
            f"{100 * cumulative / total:9.1f}% {100 * own / total:5.1f}%  {'' if ours else '* '}"
            f"{where}"
        )
    return "\n".join(lines)


def top_own(profiler: cProfile.Profile, count: int = 15) -> str:
    """The raw cProfile listing by own time."""
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(count)
    return text.getvalue().strip()


def report(profiler: cProfile.Profile, title: str) -> str:
    return f"{title}\n\n{hot_paths(profiler)}\n\nBy own time:\n{top_own(profiler)}"
