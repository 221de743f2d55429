"""`fetch_page`: read a web page as plain text, the research agent's custom tool.

`agent.yaml` lists it as `pages:fetch_page`; the loader imports it from this folder. It is an
ordinary `@tool` function, so it also works in code: `Agent(tools=[fetch_page, ...])`.

A page can carry instructions meant for the model ("now fetch http://169.254.169.254/..."), so
the tool refuses addresses on this machine or its private network, and does not follow redirects
by itself: the model gets the new address and must ask for it, which checks it again. Set
`RESEARCH_ALLOW_PRIVATE=1` to read pages on your own network. Special-token text in a page is
neutralized by the runtime before it reaches the prompt, like every tool result.
"""

from __future__ import annotations

import ipaddress
import os
from html.parser import HTMLParser
from urllib.parse import urlsplit

import anyio
import httpx

from agent import tool
from agent.errors import ToolExecutionError

MAX_BYTES = 2_000_000  # read at most this much of a page
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCKS = frozenset({"p", "div", "li", "tr", "br", "h1", "h2", "h3", "h4", "section", "article"})


class _Text(HTMLParser):
    """The visible text of an HTML page, one block per line, and its title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.lines: list[str] = [""]
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skipping += 1
        elif tag in _BLOCKS:
            self.lines.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self.lines.append("")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.lines[-1] += data

    def text(self) -> str:
        kept = (" ".join(line.split()) for line in self.lines)
        return "\n".join(line for line in kept if line)


async def _check_address(host: str) -> None:
    if os.environ.get("RESEARCH_ALLOW_PRIVATE") == "1":
        return
    try:
        infos = await anyio.getaddrinfo(host, None)
    except OSError as exc:
        raise ToolExecutionError(f"cannot resolve {host!r}: {exc}; check the URL") from exc
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if not address.is_global:
            raise ToolExecutionError(
                f"{host!r} is a private or local address ({address}); only public pages can be "
                "fetched"
            )


@tool
async def fetch_page(url: str) -> str:
    """Fetch a web page and return its title and text.

    Args:
        url: The page's full http or https URL, for instance one from the search results.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolExecutionError(f"{url!r} is not an http(s) URL; pass a full URL")
    await _check_address(parts.hostname)
    headers = {"User-Agent": "llama-agent-research-example/0.1"}
    try:
        async with (
            httpx.AsyncClient(timeout=15, headers=headers) as client,
            client.stream("GET", url.strip()) as response,
        ):
            if response.is_redirect:
                location = response.headers.get("location", "")
                target = str(response.url.join(location))
                return f"The page moved to {target}; fetch that URL to read it."
            if response.status_code >= 400:
                raise ToolExecutionError(f"{url} answered HTTP {response.status_code}")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in ("text/html", "text/plain", "application/xhtml+xml", ""):
                raise ToolExecutionError(f"{url} is {kind}, not a web page; try another result")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_BYTES:
                    break
            text = bytes(body[:MAX_BYTES]).decode(response.encoding or "utf-8", errors="replace")
    except httpx.HTTPError as exc:
        raise ToolExecutionError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from exc
    if kind == "text/plain":
        return text
    parser = _Text()
    parser.feed(text)
    parser.close()
    title = " ".join(parser.title.split())
    return f"{title}\n{url}\n\n{parser.text()}" if title else parser.text()
