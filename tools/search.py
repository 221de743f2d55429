"""Web search for the model: `brave_search` (Llama's trained built-in name) and `web_search`.

Both search with `ddgs` (the maintained successor of `duckduckgo-search`), DuckDuckGo by default.
`ddgs` is synchronous, so the tools are sync tools: the agent runs each search in a worker thread
under the tool's deadline, and abandons a thread that hangs. Results come back as compact
numbered text (title, URL, snippet); the prompt renderer neutralizes special-token text in them,
as it does in every tool result. Failures (no results, rate limiting, timeouts, network errors)
become a tool error the model can read and act on; nothing raises into the run.

```python
tools = search_tools(region="de-de", timelimit="m", max_results=5)
```
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from annotated_types import Gt, Interval
from ddgs import DDGS
from ddgs.exceptions import DDGSException, TimeoutException

from agent import Tool, tool
from agent.errors import ToolExecutionError
from agent.toolkit import ToolsetContext, check_settings

from ._names import Names, default_names, pick

__all__ = [
    "MAX_RESULTS",
    "SAFESEARCH_ENGINES",
    "SearchOptions",
    "SearchSettings",
    "format_results",
    "search",
    "search_sync",
    "search_tools",
    "search_toolset",
]

MAX_RESULTS = 50  # per search, from the configuration
SAFESEARCH_ENGINES = frozenset({"brave", "google", "mojeek", "startpage"})
"""The `ddgs` (9.16) text engines that pass `safesearch` on; the others, DuckDuckGo's HTML
endpoint included, ignore it."""
_TITLE, _URL, _BODY = 200, 500, 500  # characters kept per field of each result
_QUERY_CHARS = 500
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How searches are made."""

    region: str = "wt-wt"
    """`wt-wt` (no region), `us-en`, `de-de`, `fr-fr`, ..."""
    safesearch: Literal["on", "moderate", "off"] = "moderate"
    """Passed to the engine, but only some honour it (`SAFESEARCH_ENGINES`): `ddgs`' DuckDuckGo
    engine, the default, ignores it and gets DuckDuckGo's own default filtering. A value other
    than `moderate` with an engine that ignores it warns (`RuntimeWarning`)."""
    timelimit: Literal["d", "w", "m", "y"] | None = None
    """Only results from the last day, week, month or year."""
    max_results: Annotated[int, Interval(ge=1, le=MAX_RESULTS)] = 5
    """Results per search; also the most the model may ask `web_search` for (it may ask for
    fewer). DuckDuckGo gives about 10 per page."""
    backend: str = "duckduckgo"
    """A `ddgs` text backend, or several comma-separated, or `auto` (all of them)."""
    timeout: Annotated[float, Gt(0)] = 15.0
    """Seconds per search: the tools' deadline, after which a hung search is abandoned and the
    model told so."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.safesearch != "moderate" and (ignoring := self.engines_ignoring_safesearch()):
            warnings.warn(
                f"tools.search: safesearch={self.safesearch!r} has no effect with the "
                f"{', '.join(ignoring)} search engine{'s' if len(ignoring) > 1 else ''}, which "
                f"ignore{'' if len(ignoring) > 1 else 's'} it; the engines that honour it are "
                f"{', '.join(sorted(SAFESEARCH_ENGINES))} (`backend:`)",
                RuntimeWarning,
                stacklevel=3,
            )

    def engines_ignoring_safesearch(self) -> list[str]:
        """The engines of `backend` that ignore `safesearch` (`auto`: some of them do)."""
        engines = [name.strip() for name in self.backend.split(",") if name.strip()]
        return [
            "auto (some of its engines)" if name in ("auto", "all") else name
            for name in engines
            if name not in SAFESEARCH_ENGINES
        ]


@dataclass(frozen=True, kw_only=True)
class SearchSettings(SearchOptions):
    """The web search tools (`brave_search`, `web_search`), through `ddgs` (DuckDuckGo)."""

    names: Names | None = None
    """`native`: `brave_search`, the name Llama was trained on (`Tools: brave_search` in the
    system prompt); `custom`: `web_search`, an ordinary tool with a JSON schema; `both`.
    Unset: `native` for Llama 3.1 and 3.3, `custom` for 3.2 (trained for the code interpreter
    but not for search), so that the model does not see two tools that do the same thing."""


def search_toolset(settings: SearchSettings, context: ToolsetContext) -> list[Tool[..., Any]]:
    """The search tools a config's `search` entry asks for."""
    return _search_tools(settings, settings.names or default_names(context.family, trained=False))


def _clean(value: Any, limit: int) -> str:
    """One line, bounded: a result cannot fake the list's layout. (Special-token text is left
    to the prompt renderer, which neutralizes every tool result exactly once.)"""
    text = _SPACE.sub(" ", str(value or "")).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def format_results(results: Sequence[Mapping[str, Any]]) -> str:
    """Numbered results: title, then URL and snippet indented below it."""
    lines: list[str] = []
    for number, result in enumerate(results, start=1):
        lines.append(f"{number}. {_clean(result.get('title'), _TITLE) or '(no title)'}")
        lines.append(f"   {_clean(result.get('href') or result.get('url'), _URL)}")
        if body := _clean(result.get("body"), _BODY):
            lines.append(f"   {body}")
    return "\n".join(lines)


def _timed_out(exc: BaseException) -> bool:
    # ddgs re-raises an engine's TimeoutException wrapped in a plain DDGSException.
    causes = (exc, *exc.args)
    return any(isinstance(c, TimeoutException) for c in causes) or "timed out" in str(exc).lower()


def search_sync(query: str, options: SearchOptions, *, max_results: int | None = None) -> str:
    """Search the web and return the results as numbered text (blocking: a worker thread's job).

    `max_results` (what the model asked for) is kept between 1 and `options.max_results`.
    `ddgs`' own per-request timeout is `options.timeout`; the caller enforces the whole
    search's deadline (the agent does, for the tools).

    Raises:
        ToolExecutionError: no results, rate limiting, a timeout or a network error; the message
            tells the model what happened and what to do.
    """
    query = _SPACE.sub(" ", query).strip()
    if not query:
        raise ToolExecutionError("the search query is empty; say what to search for")
    query = query[:_QUERY_CHARS]
    count = options.max_results
    if max_results is not None:
        count = min(max(max_results, 1), options.max_results)
    try:
        with DDGS(timeout=math.ceil(options.timeout)) as ddgs:
            results = ddgs.text(
                query,
                region=options.region,
                safesearch=options.safesearch,
                timelimit=options.timelimit,
                max_results=count,
                backend=options.backend,
            )
    except DDGSException as exc:
        if _timed_out(exc):
            raise _timeout_error(options) from exc
        if "no results" in str(exc).lower():
            raise ToolExecutionError(
                f"no results for {query!r}. Try other or fewer keywords. (The search engine "
                "gives the same answer when it is rate-limiting; if every search comes back "
                "empty, wait a minute before searching again.)"
            ) from exc
        raise ToolExecutionError(
            f"web search is unavailable ({_clean(exc, 200)}). Try again later, or answer "
            "without searching and say so."
        ) from exc
    except Exception as exc:  # a parsing bug in ddgs must not end the run
        raise ToolExecutionError(
            f"web search failed ({type(exc).__name__}: {_clean(exc, 200)}). Try again, or "
            "answer without searching and say so."
        ) from exc
    if not results:
        raise ToolExecutionError(f"no results for {query!r}. Try other keywords.")
    return format_results(results[:count])


async def search(query: str, options: SearchOptions, *, max_results: int | None = None) -> str:
    """`search_sync` from async code: in a worker thread, under `options.timeout`.

    The thread cannot be interrupted: at the deadline it is abandoned, and `ddgs`' own
    per-request timeout ends it soon after.

    Raises:
        ToolExecutionError: as `search_sync`, and when the deadline passes.
    """
    work = functools.partial(search_sync, query, options, max_results=max_results)
    try:
        with anyio.fail_after(options.timeout):
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except TimeoutError as exc:
        raise _timeout_error(options) from exc


def _timeout_error(options: SearchOptions) -> ToolExecutionError:
    return ToolExecutionError(
        f"web search timed out after {options.timeout:g} s. Try again, perhaps with a shorter "
        "query, or answer without searching and say so."
    )


def search_tools(
    *,
    region: str = "wt-wt",
    safesearch: Literal["on", "moderate", "off"] = "moderate",
    timelimit: Literal["d", "w", "m", "y"] | None = None,
    max_results: int = 5,
    backend: str = "duckduckgo",
    timeout: float = 15.0,
    names: Names = "both",
) -> list[Tool[..., Any]]:
    """The `brave_search` built-in and the `web_search` custom tool.

    Args:
        region: `wt-wt` (no region), `us-en`, `de-de`, ...
        safesearch: `on`, `moderate` or `off`. Only some engines honour it (`brave`, `google`,
            `mojeek`, `startpage`); DuckDuckGo's, the default, ignores it, and a value other than
            `moderate` with such an engine warns.
        timelimit: only results from the last day (`d`), week, month or year; None: any time.
        max_results: results per search, up to 50; also the most the model may ask
            `web_search` for (it may ask for fewer). DuckDuckGo gives about 10 per page.
        backend: the `ddgs` backend; `duckduckgo` by default.
        timeout: seconds per search: the tools' deadline, after which a hung search is
            abandoned and the model told so.
        names: `"both"` (the default), `"native"` (only `brave_search`, Llama 3.1's trained
            name) or `"custom"` (only `web_search`).
    """
    options = SearchOptions(
        region=region,
        safesearch=safesearch,
        timelimit=timelimit,
        max_results=max_results,
        backend=backend,
        timeout=timeout,
    )
    return _search_tools(options, names)


def _search_tools(options: SearchOptions, names: Names) -> list[Tool[..., Any]]:
    timeout = options.timeout

    @tool(name="brave_search", builtin="brave_search", timeout=timeout)
    def brave_search(query: str) -> str:
        """Search the web.

        Args:
            query: What to search for.
        """
        return search_sync(query, options)

    def web_search(query: str, max_results: int = options.max_results) -> str:
        return search_sync(query, options, max_results=max_results)

    # The docstring is the schema's source, and the limit it states is the configured one.
    web_search.__doc__ = f"""Search the web and return numbered results: title, URL and snippet.

        Args:
            query: What to search for, as keywords or a question.
            max_results: How many results to return, from 1 to {options.max_results}.
        """
    return pick(names, brave_search, tool(name="web_search", timeout=timeout)(web_search))
