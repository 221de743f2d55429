"""Agents from YAML: the strict config spec, its JSON Schema, and the loader.

```python
from agent import load_agent

agent = load_agent("config.yaml")
result = await agent.run("What is 2**100?")
```
"""

from agent.config._build import build_agent, build_tools
from agent.config._load import config_json_schema, load_agent, load_config, parse_config
from agent.config._spec import (
    AgentConfig,
    CodeEntry,
    CustomTool,
    LimitsSettings,
    OllamaOptions,
    OllamaSettings,
    SandboxSettings,
    SearchSettings,
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
    "build_agent",
    "build_tools",
    "config_json_schema",
    "load_agent",
    "load_config",
    "parse_config",
]
