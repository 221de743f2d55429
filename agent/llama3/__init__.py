"""The Llama 3.x native format: render prompts, parse completions, neutralize untrusted text.

Pure: no I/O, nothing else of the project imported.
"""

from agent.llama3._types import (
    BUILTIN_NAMES,
    BuiltinName,
    MalformedCall,
    Message,
    ParsedCompletion,
    Role,
    StopReason,
    ToolCall,
    ToolFormat,
    ToolSpec,
)

__all__ = [
    "BUILTIN_NAMES",
    "BuiltinName",
    "MalformedCall",
    "Message",
    "ParsedCompletion",
    "Role",
    "StopReason",
    "ToolCall",
    "ToolFormat",
    "ToolSpec",
]
