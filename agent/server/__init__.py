"""Agents served to other programs.

- Over HTTP: `AgentServer` (an ASGI app) and `serve` (uvicorn), behind `llama-agent serve`.
  Needs the `server` extra: `pip install 'llama-agent[server]'`.
- As an MCP tool: `serve_mcp` (stdio or Streamable HTTP) and `mcp_server`, behind
  `llama-agent mcp`. Needs the `mcp` extra: `pip install 'llama-agent[mcp]'`.

Modules: `_http` (the app: routes, API keys, draining at shutdown, `serve`; OpenAI's
chat-completions request, response and chunk shapes) and `_mcp` (the agent as one
MCP tool; it imports the SDK only when used).
"""

from __future__ import annotations

from agent.server._http import API_KEY_VARIABLE, AgentServer, is_loopback, serve
from agent.server._mcp import DEFAULT_DESCRIPTION, mcp_server, serve_mcp

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_DESCRIPTION",
    "AgentServer",
    "is_loopback",
    "mcp_server",
    "serve",
    "serve_mcp",
]
