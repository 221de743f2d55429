"""Tools from plain Python functions: JSON schemas, strict validation, safe execution.

`@tool` / `Tool.from_function` read a typed function; `Tool.from_schema` takes a JSON schema and
a callable. `Tool.validate` checks model-written arguments against the schema the model was
shown (`InvalidArgumentsError`, one line per problem) and returns a `BoundCall`;
`Tool.execute` runs it under the tool's timeout and returns a `ToolResult` (failures and
timeouts are logged on the `agent.tools` logger: one WARNING line each, the traceback at DEBUG).
`Tool.spec`, what the renderer shows, is the schema with a type note ending each parameter's
description, since Meta's templates drop types, allowed values and defaults. `Toolbox` holds an
agent's tools and resolves calls, built-ins included.

The modules: `_tool` (the definition: `Tool`, `@tool`, `Toolbox`, option checks), `_schema`
(function -> JSON schema and pydantic converter), `_describe` (the type notes shown to the model),
`_validate` (argument checks, coercions, problem lines), `_execute` (running a call: `RunContext`,
timeouts, errors as results, `ToolResult`; threads and tasks a caller can walk away from, caps
on abandoned calls, the blocked-loop watchdog), `_toolsets` (where tools come
from: packages found through entry points and their settings; sources whose tools are known once
the agent is open, `ToolSource` and `LiveToolbox`), `_mcp` (`MCPTools`: an MCP server's tools,
through the `mcp` extra).
"""

from agent.toolkit._execute import (
    ABANDON_AFTER,
    BLOCKED_LOOP_WARNING,
    BoundCall,
    RunContext,
    ToolResult,
    abandoned_calls,
    set_abandoned_limit,
    set_thread_limit,
    tool_thread_limiter,
)
from agent.toolkit._mcp import MCPServerSettings, MCPTools, mcp_available
from agent.toolkit._tool import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    SERVED_BUILTINS,
    Tool,
    Toolbox,
    tool,
)
from agent.toolkit._toolsets import (
    ENTRY_POINT_GROUP,
    LiveToolbox,
    Size,
    Toolset,
    ToolsetCheck,
    ToolsetContext,
    ToolSource,
    check_settings,
    find_toolsets,
    split_sources,
)
from agent.toolkit._validate import is_plain_json

__all__ = [
    "ABANDON_AFTER",
    "BLOCKED_LOOP_WARNING",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "ENTRY_POINT_GROUP",
    "SERVED_BUILTINS",
    "BoundCall",
    "LiveToolbox",
    "MCPServerSettings",
    "MCPTools",
    "RunContext",
    "Size",
    "Tool",
    "ToolResult",
    "ToolSource",
    "Toolbox",
    "Toolset",
    "ToolsetCheck",
    "ToolsetContext",
    "abandoned_calls",
    "check_settings",
    "find_toolsets",
    "is_plain_json",
    "mcp_available",
    "set_abandoned_limit",
    "set_thread_limit",
    "split_sources",
    "tool",
    "tool_thread_limiter",
]
