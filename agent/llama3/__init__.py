"""The Llama 3.x native format: render prompts, parse completions, neutralize untrusted text.

Pure: no I/O, nothing else of the project imported (except `agent.errors`).

- `render_prompt(messages, tools, ...)`: Meta's prompt text, byte for byte.
- `parse_completion(text, tools=...)` / `StreamParser`: prose, tool calls, botched calls.
- `neutralize` / `unneutralize`: keep special tokens out of untrusted text, reversibly.
- `count_tokens`: exact with the `tokenizer` extra, a safe estimate without; `encode`: the
  token ids (the extra only).
- `common_prefix_length`, `special_token_spans`, `last_special_token_end`: the pieces of
  incremental counting (a count up to the end of a special token never changes).
"""

from agent.llama3._parse import StreamParser, allowed_names, parse_completion, plain_text
from agent.llama3._render import render_prompt
from agent.llama3._special import (
    BEGIN_OF_TEXT,
    END_HEADER,
    END_OF_TEXT,
    EOM,
    EOT,
    PYTHON_TAG,
    SPECIAL_TOKENS,
    START_HEADER,
    STOP_TOKENS,
    common_prefix_length,
    count_tokens,
    encode,
    last_special_token_end,
    neutralize,
    special_token_spans,
    tokenizer_is_exact,
    unneutralize,
)
from agent.llama3._types import (
    BUILTIN_NAMES,
    BuiltinName,
    Family,
    MalformedCall,
    Message,
    ParsedCompletion,
    Role,
    StopReason,
    ToolCall,
    ToolFormat,
    ToolSpec,
    default_tool_format,
    model_family,
)

__all__ = [
    "BEGIN_OF_TEXT",
    "BUILTIN_NAMES",
    "END_HEADER",
    "END_OF_TEXT",
    "EOM",
    "EOT",
    "PYTHON_TAG",
    "SPECIAL_TOKENS",
    "START_HEADER",
    "STOP_TOKENS",
    "BuiltinName",
    "Family",
    "MalformedCall",
    "Message",
    "ParsedCompletion",
    "Role",
    "StopReason",
    "StreamParser",
    "ToolCall",
    "ToolFormat",
    "ToolSpec",
    "allowed_names",
    "common_prefix_length",
    "count_tokens",
    "default_tool_format",
    "encode",
    "last_special_token_end",
    "model_family",
    "neutralize",
    "parse_completion",
    "plain_text",
    "render_prompt",
    "special_token_spans",
    "tokenizer_is_exact",
    "unneutralize",
]
