"""A Streamable HTTP MCP server built with the official SDK, run by the tests as a process:
`python mcp_http_server.py PORT`. Its tools cover what a real server sends: a slow call, an
error, pictures, structured output, a header echo, and a tool list that changes."""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ImageContent, TextContent

server = MCPServer("test-http", log_level="WARNING")


@server.tool(name="files.read", description="Read a file of the test server.")
def read(path: str) -> str:
    return f"contents of {path}"


@server.tool(description="Sleep, then say so.")
async def slow(seconds: float) -> str:
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool(description="Always fails.")
def broken() -> str:
    raise ToolError("the disk is on fire")


@server.tool(description="A chart and its caption.")
def chart() -> list[TextContent | ImageContent]:
    return [
        TextContent(type="text", text="Sales by month"),
        ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
    ]


@server.tool(description="Numbers, as structured content.")
def stats() -> dict[str, int]:
    return {"files": 3, "lines": 120}


@server.tool(description="The Authorization header this request carried.")
def whoami(ctx: Context) -> str:
    request = ctx.request_context.request
    headers = getattr(request, "headers", {})
    return str(headers.get("authorization", "none"))


@server.tool(description="Add the tool 'fresh' and tell the clients.")
async def grow(ctx: Context) -> str:
    server.add_tool(lambda: "fresh result", name="fresh", description="A tool added later.")
    await ctx.notify_tools_changed()
    return "added"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
