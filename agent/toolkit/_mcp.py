"""`MCPTools`: the tools of an MCP server (stdio or Streamable HTTP), through the official `mcp`
SDK (the `mcp` extra).

One connection serves every run of an agent. It lives in a task of its own, because the SDK's
transports hold task groups that must be entered and left by one task, and no run lives as long
as the agent: the agent's `open()` starts it, `aclose()` stops it (shielded, so cancellation and
Ctrl-C still stop the server process: the SDK closes its stdin, then kills its process group).
A server that dies fails the call that hits it, as an error the model reads, and is started
again by the next call. A `tools/list_changed` notification (or event, on 2026 connections)
marks the listing stale; the next run lists the tools again.

What the model sees: each tool under a safe name (`fs.read` -> `fs_read`, after the `prefix`:
a `.` would read as Llama's built-in `name.call(...)` form), with the server's JSON schema made
usable (`type: object` where it is missing, `definitions` as `$defs`); calls go to the server
under the tool's own name. Results: text blocks joined, structured content as JSON (when no text
block carries it), images, audio and resources as one line each, since the model
cannot see them; `isError` results reach the model as errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import anyio
import anyio.lowlevel
from annotated_types import Gt

from agent.errors import DeveloperError, MCPServerError, ToolDefinitionError, ToolExecutionError
from agent.toolkit._tool import DEFAULT_TIMEOUT, Tool
from agent.toolkit._toolsets import check_settings

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

logger = logging.getLogger("agent.tools")

EXTRA_MISSING = "MCP servers need the mcp extra: pip install 'llama-agent[mcp]'"
STDERR_LINES = 10  # of a stdio server's stderr, in the error when it fails to start or dies
_NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def mcp_available() -> bool:
    """True when the `mcp` SDK is installed (the `mcp` extra)."""
    return importlib.util.find_spec("mcp") is not None


@dataclass(eq=False)
class _Connection:
    """One session with the server, owned by its own task (see the module's docstring)."""

    loop: asyncio.AbstractEventLoop
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ready: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)
    client: Client | None = None
    listing: list[mcp_types.Tool] = field(default_factory=list)
    failure: BaseException | None = None
    dead: bool = False
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, kw_only=True)
class MCPServerSettings:
    """An MCP server whose tools the agent uses: a `command` (stdio) or a `url` (Streamable
    HTTP)."""

    command: str | None = None
    """The program that runs the server over stdio (`uvx`, `npx`, `python`...)."""
    args: Sequence[str] = ()
    """Its arguments."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables for it, added to a minimal inherited set (`PATH`, `HOME`...)."""
    cwd: str | None = None
    """Its working directory (in a config: relative to the config file's folder). Unset: the
    agent's."""
    url: str | None = None
    """The URL of a server over Streamable HTTP, instead of `command`."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """HTTP headers for every request (`Authorization: "Bearer ${TOKEN}"`)."""
    include: Sequence[str] | None = None
    """Only these of the server's tools (its own names)."""
    exclude: Sequence[str] = ()
    """The server's tools to leave out (its own names)."""
    prefix: str | None = None
    """Put before each tool's name, with `_`: `prefix: web` makes `web_browser_navigate`."""
    timeout: Annotated[float, Gt(0)] = DEFAULT_TIMEOUT
    """Seconds per call (the call is cancelled on the server too)."""
    name: str | None = None
    """How messages name the server. Unset: its command line or URL."""

    def __post_init__(self) -> None:
        check_settings(self)
        if (self.command is None) == (self.url is None):
            raise DeveloperError(
                "an MCP server needs a command (stdio) or a url (Streamable HTTP), not both"
            )
        if self.url is not None and not re.match(r"https?://", self.url):
            raise DeveloperError(
                f"an MCP server's url must start with http(s)://, got {self.url!r}"
            )
        if self.include is not None and self.exclude:
            raise DeveloperError("an MCP server takes include or exclude, not both")
        if self.prefix is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]{0,31}", self.prefix
        ):
            raise DeveloperError(
                f"an MCP server's prefix must be an identifier of at most 32 characters "
                f"(letters, digits, '_'), got {self.prefix!r}"
            )


class MCPTools:
    """The tools of one MCP server, for `Agent(tools=[...])` beside functions and `Tool`s.

    ```python
    git = MCPTools(command="uvx", args=["mcp-server-git", "--repository", "."])
    web = MCPTools(url="http://127.0.0.1:8931/mcp", headers={"Authorization": "Bearer ..."},
                   include=["browser_navigate"], prefix="web")   # -> web_browser_navigate
    async with Agent("llama3.1", tools=[git, web]) as agent:   # the servers start here
        ...
    ```

    - `command`, `args`, `env` (added to a minimal inherited environment: `PATH`, `HOME`...),
      `cwd`: a local server over stdio. Or `url` and `headers`: a server over Streamable HTTP.
    - `include` / `exclude`: the server's tool names to keep / to leave out (not both).
    - `prefix`: prepended with `_` to every name the model sees, to keep servers apart.
    - `timeout`: seconds per call (the call is cancelled on the server too).
    - `name`: how errors name the server (default: its command line or URL).

    The agent starts the server when it opens and stops it when it closes; used alone,
    `async with MCPTools(...) as source` does the same. One connection serves every run.
    """

    def __init__(
        self,
        *,
        command: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
    ) -> None:
        self.settings = MCPServerSettings(
            command=command,
            args=tuple(args),
            env=dict(env or {}),
            cwd=os.fspath(cwd) if cwd is not None else None,
            url=url,
            headers=dict(headers or {}),
            include=tuple(include) if include is not None else None,
            exclude=tuple(exclude or ()),
            prefix=prefix,
            timeout=timeout,
            name=name,
        )
        if not mcp_available():
            raise DeveloperError(EXTRA_MISSING)
        self.command = command
        self.args = tuple(self.settings.args)
        self.env = dict(env) if env is not None else None
        self.cwd = self.settings.cwd
        self.url = url
        self.headers = dict(self.settings.headers)
        self.include = tuple(include) if include is not None else None
        self.exclude = tuple(exclude or ())
        self.prefix = prefix
        self.timeout = float(timeout)
        where = shlex.join([command, *self.args]) if command is not None else str(url)
        self.name = name or where
        self._conn: _Connection | None = None
        self._locks: dict[asyncio.AbstractEventLoop, anyio.Lock] = {}
        self._listed: tuple[tuple[str, str, str], ...] | None = None
        self._tools: tuple[Tool[..., Any], ...] = ()
        self._stale = False
        self._stderr: TextIO | None = None

    @property
    def label(self) -> str:
        return f"MCP server '{self.name}'"

    def __repr__(self) -> str:
        return f"MCPTools({self.name!r})"

    @classmethod
    def from_settings(cls, settings: MCPServerSettings) -> MCPTools:
        """The source `settings` describe (a config's `- mcp:` entry)."""
        return cls(
            command=settings.command,
            args=settings.args,
            env=settings.env or None,
            cwd=settings.cwd,
            url=settings.url,
            headers=settings.headers,
            include=settings.include,
            exclude=settings.exclude or None,
            prefix=settings.prefix,
            timeout=settings.timeout,
            name=settings.name,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the server and list its tools; `MCPServerError` (with the server's last
        stderr lines) when it cannot start."""
        await self._live()

    async def aclose(self) -> None:
        """Stop the server (shielded: also when the caller is being cancelled)."""
        conn, self._conn = self._conn, None
        with anyio.CancelScope(shield=True):
            if conn is not None:
                await _stop(conn)
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    async def __aenter__(self) -> MCPTools:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def tools(self) -> Sequence[Tool[..., Any]]:
        """The server's tools as the model sees them; listed again after `list_changed`.

        The same tuple while nothing changed (so `LiveToolbox` rebuilds nothing). A server that
        died keeps its tools: the next call starts it again.
        """
        conn = self._conn
        if conn is None or conn.loop is not asyncio.get_running_loop():
            conn = await self._live()
        elif self._stale and not conn.dead and conn.client is not None:
            self._stale = False
            try:
                listing = await _list_tools(conn.client, refresh=True)
            except Exception as exc:
                logger.warning("%s: listing its tools again failed: %s", self.label, exc)
            else:
                self._absorb(listing)
        return self._tools

    async def _live(self) -> _Connection:
        """The live connection: started, or started again when the server died."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            self._locks = {loop: (lock := anyio.Lock())}  # a lock belongs to its event loop
        async with lock:
            conn = self._conn
            if conn is not None and conn.loop is loop and not conn.dead:
                return conn
            if conn is not None and conn.loop is loop:
                await _stop(conn)
            self._conn = None
            conn = await self._start(loop)
            try:
                self._absorb(conn.listing)
            except BaseException:
                await _stop(conn)
                raise
            self._conn = conn
            return conn

    async def _start(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        conn = _Connection(loop=loop)
        # The task that owns the session; it ends when `conn.scope` is cancelled.
        conn.task = loop.create_task(self._serve(conn), name=f"mcp:{self.name}")
        try:
            await conn.ready.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _stop(conn)
            raise
        if conn.failure is not None:
            await conn.ended.wait()
            raise MCPServerError(self._why(f"did not start: {_reason(conn.failure)}"))
        return conn

    async def _serve(self, conn: _Connection) -> None:
        try:
            with conn.scope:
                async with self._client() as client:
                    conn.client = client
                    conn.listing = await _list_tools(client, refresh=False)
                    conn.ready.set()
                    await self._watch(client)
        except Exception as exc:
            conn.failure = conn.failure or exc
        finally:
            conn.dead = True
            conn.ready.set()
            conn.ended.set()

    def _client(self) -> Client:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        server: Any
        if self.command is not None:
            server = StdioServerParameters(
                command=self.command, args=list(self.args), env=self.env, cwd=self.cwd
            )
            if self._stderr is None:
                # Append mode: the server writes at the end whatever we read meanwhile.
                self._stderr = tempfile.TemporaryFile(  # noqa: SIM115 - closed by aclose()
                    "a+", encoding="utf-8", errors="replace"
                )
            from mcp.client.stdio import stdio_client

            server = stdio_client(server, errlog=self._stderr)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            assert self.url is not None
            http = httpx2.AsyncClient(
                headers=self.headers, timeout=httpx2.Timeout(30.0, read=300.0)
            )
            server = streamable_http_client(self.url, http_client=http)
        return Client(server, message_handler=self._on_message, client_info=_client_info())

    async def _watch(self, client: Client) -> None:
        """Until stopped: on a 2026 connection, listen for changes to the tool list (older
        ones send `notifications/tools/list_changed`, seen by `_on_message`)."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        tools = client.server_capabilities.tools
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS and tools and tools.list_changed:
            try:
                async with client.listen(tools_list_changed=True) as changes:
                    async for _ in changes:
                        self._stale = True
            except Exception as exc:
                logger.debug("%s: the tool-change subscription ended: %s", self.label, exc)
        await anyio.sleep_forever()

    async def _on_message(self, message: Any) -> None:
        import mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._stale = True
        await anyio.lowlevel.checkpoint()

    def _why(self, what: str) -> str:
        """`what` happened to the server, with its last stderr lines if it has any."""
        lines = self.stderr_tail()
        tail = "".join(f"\n  {line}" for line in lines)
        return f"{self.label} {what}" + (f"; its last stderr lines:{tail}" if tail else "")

    def stderr_tail(self, lines: int = STDERR_LINES) -> list[str]:
        """The last lines the server wrote to stderr (stdio servers)."""
        if self._stderr is None:
            return []
        self._stderr.flush()
        self._stderr.seek(0)
        return [line for line in self._stderr.read().splitlines() if line.strip()][-lines:]

    # --- the tools -------------------------------------------------------------------------

    def _absorb(self, listing: Sequence[mcp_types.Tool]) -> None:
        """Make tools of a listing, unless it is the one already made."""
        key = tuple(
            (t.name, t.description or "", json.dumps(t.input_schema, sort_keys=True))
            for t in listing
        )
        if key == self._listed:
            return
        offered = {t.name for t in listing}
        missing = [n for n in self.include or () if n not in offered]
        if missing:
            raise ToolDefinitionError(
                f"{self.label} has no tool {', '.join(map(repr, missing))} (include: lists the "
                f"server's own names; it offers {', '.join(sorted(offered)) or 'none'})"
            )
        made: dict[str, Tool[..., Any]] = {}
        origin: dict[str, str] = {}
        for listed in listing:
            if self.include is not None and listed.name not in self.include:
                continue
            if listed.name in self.exclude:
                continue
            shown = safe_name(listed.name, self.prefix)
            if shown in made:
                raise ToolDefinitionError(
                    f"{self.label}: its tools '{origin[shown]}' and '{listed.name}' both become "
                    f"'{shown}' for the model; leave one out (exclude: [...])"
                )
            try:
                made[shown] = self._tool(shown, listed)
            except (ToolDefinitionError, ValueError) as exc:
                logger.warning("%s: tool %r left out: %s", self.label, listed.name, exc)
                continue
            origin[shown] = listed.name
        self._tools = tuple(made.values())
        self._listed = key

    def _tool(self, shown: str, listed: mcp_types.Tool) -> Tool[..., Any]:
        remote = listed.name

        async def call(**arguments: Any) -> str:
            return await self._call(remote, arguments)

        call.__qualname__ = call.__name__ = shown
        return Tool.from_schema(
            name=shown,
            description=listed.description or listed.title or "",
            parameters=usable_schema(listed.input_schema),
            function=call,
            timeout=self.timeout,
        )

    async def _call(self, remote: str, arguments: dict[str, Any]) -> str:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED
        from pydantic import ValidationError

        conn = await self._live()
        assert conn.client is not None
        try:
            result = await conn.client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise ToolExecutionError(f"the MCP server refused the call: {exc}") from exc
            conn.dead = True
            raise ToolExecutionError(self._died()) from exc
        except ValidationError as exc:
            raise ToolExecutionError("the MCP server's answer is not a valid tool result") from exc
        except Exception as exc:  # the transport failed (HTTP errors, broken pipes)
            conn.dead = True
            raise ToolExecutionError(self._died(f" ({_reason(exc)})")) from exc
        text = result_text(result)
        if result.is_error:
            raise ToolExecutionError(text or "the tool reported an error and said nothing more")
        return text

    def _died(self, detail: str = "") -> str:
        logger.warning("%s", self._why(f"stopped answering{detail}"))
        return (
            f"the tool's server stopped during the call{detail}; it is started again on the "
            "next call, which may be retried"
        )


async def _stop(conn: _Connection) -> None:
    with anyio.CancelScope(shield=True):
        conn.scope.cancel()
        if conn.task is not None and conn.loop is asyncio.get_running_loop():
            await conn.ended.wait()


async def _list_tools(client: Client, *, refresh: bool) -> list[mcp_types.Tool]:
    """Every page of the server's tool listing."""
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose pages never end cannot hang the agent
        page = await client.list_tools(cursor=cursor, cache_mode="refresh" if refresh else "use")
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _client_info() -> mcp_types.Implementation:
    from importlib.metadata import PackageNotFoundError, version

    from mcp_types import Implementation

    try:
        ours = version("llama-agent")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "0"
    return Implementation(name="llama-agent", version=ours)


def _reason(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- names, schemas, results ---------------------------------------------------------------


def safe_name(name: str, prefix: str | None = None) -> str:
    """The name the model sees: `[prefix_]name` with every character other than a letter, a
    digit or `_` made `_`, at most 64 characters (a long one ends in a hash of the original)."""
    safe = _UNSAFE.sub("_", name) or "tool"
    if prefix:
        safe = f"{prefix}_{safe}"
    if safe[0].isdigit():
        safe = f"_{safe}"
    if len(safe) > _NAME_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        safe = f"{safe[: _NAME_LIMIT - 9]}_{digest}"
    return safe


def usable_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """An MCP tool's input schema as `Tool.from_schema` takes it.

    Servers send what their libraries make: no `type` at the root, draft-07 `definitions`,
    `anyOf` at the root. The root becomes `type: object` (arguments are named); a root typed
    anything else cannot be called with named arguments and is refused (`ValueError`).
    """
    result = dict(schema or {})
    kind = result.get("type")
    if kind is None:
        result["type"] = "object"
    elif kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise ValueError(f"its input schema is of type {kind!r}, not an object")
    else:
        result["type"] = "object"
    if "definitions" in result and "$defs" not in result:
        result["$defs"] = result.pop("definitions")
        result = _moved_refs(result)
    if not isinstance(result.get("properties", {}), Mapping):
        raise ValueError("its input schema's properties are not an object")
    result.setdefault("properties", {})
    return result


def _moved_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                item.replace("#/definitions/", "#/$defs/", 1)
                if key == "$ref" and isinstance(item, str)
                else _moved_refs(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_moved_refs(item) for item in value]
    return value


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model reads of a tool result (see the module's docstring)."""
    import mcp_types

    parts: list[str] = []
    texts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
            texts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(
                f"[{block.type} ({block.mime_type}, {len(block.data) * 3 // 4:,} bytes): not shown]"
            )
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link: {block.uri}{_about(block.name, block.mime_type)}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            amount = (
                f"{len(resource.text):,} characters"
                if isinstance(resource, mcp_types.TextResourceContents)
                else f"{_decoded_size(resource.blob):,} bytes"
            )
            parts.append(f"[resource: {resource.uri}{_about(None, resource.mime_type)}, {amount}]")
        else:  # a content type newer than this code
            parts.append(f"[{getattr(block, 'type', 'content')}: not shown]")
    # Servers should repeat structured content as text (the spec's backward compatibility),
    # often in a form of their own ({"result": ...} around a plain value): text, when there is
    # some, is what the server meant people to read.
    structured = result.structured_content
    if structured is not None and not texts:
        parts.append(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(parts)


def _decoded_size(data: str) -> int:
    """Bytes in base64 `data`, without decoding it."""
    return len(data.rstrip("=")) * 3 // 4


def _about(name: str | None, mime_type: str | None) -> str:
    details = [d for d in (name, mime_type) if d]
    return f" ({', '.join(details)})" if details else ""
