"""Agents served over HTTP: `AgentServer` (an ASGI app) and `serve` (uvicorn), behind
`llama-agent serve`. Needs the `server` extra: `pip install 'llama-agent[server]'`.

Modules: `_http` (the app: routes, API keys, draining at shutdown, `serve`) and `_openai`
(OpenAI's chat-completions request, response and chunk shapes).
"""

from __future__ import annotations

from agent.server._http import API_KEY_VARIABLE, AgentServer, is_loopback, serve

__all__ = ["API_KEY_VARIABLE", "AgentServer", "is_loopback", "serve"]
