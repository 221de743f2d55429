"""`llama-agent mcp`: an agent served as one MCP tool, over stdio or Streamable HTTP.

The tool takes the task (`{"task": "..."}`) and returns the agent's answer. While the agent
works, each of its events (but the text deltas, which the answer carries) goes to the client as
a progress notification whose message is the event's JSON (`agent.event_to_dict`), for clients
that asked for progress. A run that ends without an answer (a limit, Ollama down) is an error
result saying why. The client cancelling its request cancels the run, its HTTP stream and tools.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agent.errors import RunError
from agent.loop import Agent, RunFinished, TextDelta, event_to_dict

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context, MCPServer

DEFAULT_DESCRIPTION = "Give a task to a Llama agent that uses its tools and answers."


def mcp_server(agent: Agent, *, name: str, description: str | None = None) -> MCPServer:
    """An MCP server (the SDK's `MCPServer`) whose one tool, `name`, runs `agent` on a task.

    The caller opens and closes the agent (`async with agent`); the server only runs it.
    """
    # The SDK (the `mcp` extra) is imported here, so `import agent.server` works without it.
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: MCPServer = MCPServer(name, log_level="WARNING")

    async def run(task: str, ctx: Context) -> str:
        sent = 0
        result = None
        try:
            async with agent.stream(task) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        continue
                    sent += 1
                    message = json.dumps(event_to_dict(event), ensure_ascii=False, default=str)
                    await ctx.report_progress(sent, None, message)
                    if isinstance(event, RunFinished):
                        result = event.result
        except RunError as exc:  # pragma: no cover - stream() reports these in RunFinished
            raise ToolError(str(exc)) from exc
        if result is None:  # pragma: no cover - a stream always ends with RunFinished
            raise ToolError("the run ended without a result")
        if result.status != "answered":
            why = result.error or f"the run ended with status '{result.status}'"
            raise ToolError(f"{why}; what it had so far: {result.answer or '(nothing)'}")
        return result.answer

    # The SDK reads the signature to inject the context: the types, not their names.
    run.__annotations__ = {"task": str, "ctx": Context, "return": str}
    server.add_tool(
        run,
        name=name,
        description=description or DEFAULT_DESCRIPTION,
        structured_output=False,
    )
    return server


async def serve_mcp(
    agent: Agent,
    *,
    name: str,
    description: str | None = None,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
) -> None:
    """Serve `agent` as the MCP tool `name` until cancelled: over stdio (stdin and stdout are
    the protocol's: print nothing there), or over Streamable HTTP on `http_host:http_port`,
    at `/mcp`. The agent is opened first (its own MCP servers started) and closed at the end."""
    server = mcp_server(agent, name=name, description=description)
    async with agent:
        if http_port is None:
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host=http_host, port=http_port)
