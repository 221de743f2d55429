"""Agents from YAML: the strict config spec, its JSON Schema, the loader and the builder.

```python
from agent import load_agent

agent = load_agent("config.yaml")
result = await agent.run("What is 2**100?")
```

Each setting is defined once, on the runtime type that uses it: the config's models are made
from those dataclasses (fields, defaults, bounds, docstrings). `LimitsSettings` is made from
`agent.Limits`, `OllamaOptions` (and `ollama.keep_alive`) from `agent.GenerateOptions`. The
toolsets a config lists come from the registry (`agent.toolkit.find_toolsets`), so their settings
models (`SearchSettings`, `SandboxSettings`, `CodeEntry`...) are made from each toolset's own
settings dataclass; the old names still resolve here, by attribute.
"""

from typing import Any

from agent.config._build import (
    build_agent,
    build_backend,
    build_tools,
    section_settings,
    server_hosts,
    with_hosts,
)
from agent.config._load import config_json_schema, load_agent, load_config, parse_config
from agent.config._spec import (
    AgentConfig,
    CustomTool,
    LimitsSettings,
    OllamaOptions,
    OllamaSettings,
    ServerSettings,
    ToolsetEntry,
    section_spec,
    settings_spec,
    toolset_entry,
    toolsets,
)

__all__ = [
    "AgentConfig",
    "CodeEntry",
    "CustomTool",
    "LimitsSettings",
    "OllamaOptions",
    "OllamaSettings",
    "SandboxSettings",
    "SearchSettings",
    "ServerSettings",
    "ToolsetEntry",
    "build_agent",
    "build_backend",
    "build_tools",
    "config_json_schema",
    "load_agent",
    "load_config",
    "parse_config",
    "section_settings",
    "server_hosts",
    "toolsets",
    "with_hosts",
]


def __getattr__(name: str) -> Any:
    # Kept for 0.1 code: these models are now derived from the registered toolsets.
    if name == "SandboxSettings":
        return section_spec("sandbox")
    if name == "SearchSettings" and "search" in toolsets():
        return settings_spec(toolsets()["search"].settings)
    if name == "CodeEntry" and "code" in toolsets():
        return toolset_entry("code")
    raise AttributeError(f"module 'agent.config' has no attribute {name!r}")
