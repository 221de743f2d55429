"""The YAML config as a strict pydantic model: every key is known, every value typed.

The field docstrings become the JSON Schema's descriptions, which editors show on hover.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator
from pydantic_core import PydanticCustomError

from agent.config._base import Spec, suggest
from agent.config._tool_spec import (
    BUILTIN_NAMES,
    TOOL_TAGS,
    CodeEntry,
    CodeSettings,
    CustomTool,
    MathEntry,
    MathSettings,
    SearchEntry,
    SearchSettings,
    ToolEntry,
)
from agent.config._yaml import SourceMap

__all__ = [
    "BUILTIN_NAMES",
    "TOOL_TAGS",
    "AgentConfig",
    "CodeEntry",
    "CodeSettings",
    "CustomTool",
    "LimitsSettings",
    "MathEntry",
    "MathSettings",
    "OllamaOptions",
    "OllamaSettings",
    "SandboxSettings",
    "SearchEntry",
    "SearchSettings",
    "ToolEntry",
    "suggest",
]

_DURATION = re.compile(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|-?\d+(\.\d+)?")


# --- ollama ------------------------------------------------------------------------------------


class OllamaOptions(Spec):
    """Sampling options sent with every request."""

    num_ctx: Annotated[int, Field(gt=0)] | None = None
    """The context window sent with every request (capped at the model's own context length).
    One size for every request means Ollama never reloads the model to resize it; Ollama
    allocates the KV cache for it when it loads the model. Unset: sized from the prompt (at
    least 8192, doubling when a conversation outgrows it)."""
    temperature: Annotated[float, Field(ge=0)] | None = None
    """Sampling temperature; 0 is (nearly) deterministic. Unset: the server's default."""
    seed: int | None = None
    """Random seed, for repeatable runs."""
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    """Nucleus sampling: keep the smallest set of tokens whose probability adds up to this."""
    top_k: Annotated[int, Field(ge=1)] | None = None
    """Sample from the k most likely tokens only."""
    num_predict: Annotated[int, Field(gt=0)] | None = None
    """Most tokens the model may write per step; a longer answer ends the run with `length`."""
    stop: list[str] = []  # noqa: RUF012 - pydantic copies defaults per instance
    """Extra stop strings (the Llama 3 end-of-turn tokens are always stop tokens)."""


class OllamaSettings(Spec):
    """Where the model is served and how."""

    host: str | None = None
    """Ollama's URL. Unset: `OLLAMA_HOST`, else http://127.0.0.1:11434. `--host` overrides both."""
    keep_alive: str | float | None = None
    """How long Ollama keeps the model loaded after a request: seconds, or a duration such as
    `30m`; negative keeps it loaded. Unset: the server's default (5m)."""
    options: OllamaOptions = OllamaOptions()
    """Sampling options."""

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if isinstance(value, str) and not _DURATION.fullmatch(value.strip()):
            raise PydanticCustomError(
                "duration",
                "'{value}' is not a duration; write seconds (300), or a duration such as "
                "30s, 5m, 1h30m (negative keeps the model loaded)",
                {"value": value},
            )
        return value


# --- limits and sandbox ------------------------------------------------------------------------


class LimitsSettings(Spec):
    """When a run stops even though the model has not answered (its status says which)."""

    max_steps: Annotated[int, Field(ge=1)] = 10
    """Model requests per run (`step_limit`)."""
    max_retries: Annotated[int, Field(ge=0)] | None = None
    """Failed calls in a row a tool tolerates before the run ends (`retry_limit`). Unset: each
    tool's own `retries`."""
    max_repeats: Annotated[int, Field(ge=0)] = 3
    """The Nth identical call is not run; one more ends the run (`repeat_limit`). 0: off."""
    run_timeout: Annotated[float, Field(gt=0)] | None = None
    """Seconds for the whole run, tools included (`timeout`)."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """Tokens the server may evaluate over the run, prompt and answer (`token_budget`)."""


_SIZE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)")
# KiB, MiB, GiB (and K, M, G) are binary; KB, MB, GB decimal.
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20}
_UNITS |= {"mib": 1 << 20, "mb": 10**6, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9}


def _size(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None or match.group("unit").lower() not in _UNITS:
        raise PydanticCustomError(
            "size",
            "'{value}' is not a size; write bytes (1048576) or a size such as 64KiB, 512MiB, 1GiB",
            {"value": value},
        )
    return int(float(match.group("n")) * _UNITS[match.group("unit").lower()])


Size = Annotated[int, BeforeValidator(_size, json_schema_input_type=int | str), Field(gt=0)]


class SandboxSettings(Spec):
    """Where the `code` tool runs Python, and what each snippet may use. Sizes are bytes or
    strings such as `512MiB`. Unset limits keep the sandbox's defaults."""

    mode: Literal["bwrap", "none"] = "bwrap"
    """`bwrap`: a bubblewrap sandbox (no network, read-only system, a scratch dir). `none`: run
    code unsandboxed, as this user, with rlimits only (every run warns). Without bubblewrap,
    code runs only with `none`."""
    wall_seconds: Annotated[float, Field(gt=0)] | None = None
    """Wall-clock seconds per snippet (default 10); the whole process tree is killed after."""
    cpu_seconds: Annotated[int, Field(gt=0)] | None = None
    """CPU seconds per process (default 5)."""
    memory_bytes: Size | None = None
    """Address space per process (default 1GiB)."""
    processes: Annotated[int, Field(gt=0)] | None = None
    """Processes and threads a snippet may run (default 32)."""
    file_bytes: Size | None = None
    """Largest file a snippet may write (default 10MiB)."""
    output_bytes: Size | None = None
    """stdout and stderr together (default 1MiB); the snippet is killed past it."""
    tmpfs_bytes: Size | None = None
    """Size of the sandbox's in-memory `/work` and `/tmp` (default 64MiB)."""
    code_bytes: Size | None = None
    """Largest snippet accepted (default 1MiB)."""


def _sandbox_shorthand(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value


# --- the whole file ----------------------------------------------------------------------------


class AgentConfig(Spec):
    """An agent: its model, prompt, tools and limits. See `config.yaml` for a commented example."""

    model: Annotated[str, Field(min_length=1)]
    """The Ollama model: `llama3.1`, `llama3.1:70b`, `llama3.2:3b`, `llama3.3`, ..."""
    system: str | None = None
    """The system prompt: who the agent is and how it should work. The tools are described to
    the model separately, in Llama's own format."""
    tools: list[ToolEntry] = []  # noqa: RUF012 - pydantic copies defaults per instance
    """Built-ins (`search`, `code`, `math`, each optionally with settings) and tools of your own
    (`package.module:function`, or a mapping with `import:` and per-tool settings)."""
    tool_format: Literal["json", "function_tag", "python_list"] | None = None
    """How tools are described to the model and how it calls them. Unset: the model's default
    (`json` for Llama 3.1 and 3.3, `python_list` for 3.2)."""
    tool_choice: Annotated[str, Field(min_length=1)] = "auto"
    """`auto`: the model decides; `required`: it must call a tool; or the name of the one tool
    it must call."""
    ollama: OllamaSettings = OllamaSettings()
    """The Ollama server and sampling options."""
    limits: LimitsSettings = LimitsSettings()
    """When a run stops even though the model has not answered."""
    sandbox: Annotated[
        SandboxSettings,
        BeforeValidator(
            _sandbox_shorthand, json_schema_input_type=Literal["bwrap", "none"] | SandboxSettings
        ),
    ] = SandboxSettings()
    """Where the `code` tool runs: `bwrap` (default) or `none`, or a mapping with limits."""

    # Set by the loader: where each value was written, and where custom tools are imported from.
    _source: SourceMap = PrivateAttr(default_factory=SourceMap)
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> SourceMap:
        """Where each value was written (empty for a config built in code)."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The config file's folder: custom tools are imported from there first."""
        return self._base_dir
