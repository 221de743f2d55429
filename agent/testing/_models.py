"""The emulator's models: what `/api/tags`, `/api/show` and `/api/ps` report, and their template.

Values follow the published `llama3.1` / `llama3.2` / `llama3.3` models (PROTOCOL.md §1.7, §3.1):
`llama.context_length` 131072, the Modelfile stop list, capabilities `["completion","tools"]`, the
Go template read back by `/api/show`.

`render_chat` renders that template the way Ollama does for `/api/chat` (and templated
`/api/generate`): the llama3.1 Go template (PROTOCOL.md §1.7) and its llama3.2 variant, with
Ollama's `collate` step (§2.1): system messages joined into `.System`, consecutive same-role
messages merged, roles the template does not know dropped, tools only in the last user message,
`tool` rendered as `ipython`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["3.1", "3.2", "3.3"]

LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
MODIFIED_AT = "2025-07-01T12:00:00.000000000Z"

LLAMA31_TEMPLATE = "\n".join(
    [
        "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>",
        "{{- if .System }}",
        "",
        "{{ .System }}",
        "{{- end }}",
        "{{- if .Tools }}",
        "",
        "Cutting Knowledge Date: December 2023",
        "",
        "When you receive a tool call response, use the output to format an answer to "
        "the orginal user question.",
        "",
        "You are a helpful assistant with tool calling capabilities.",
        "{{- end }}<|eot_id|>",
        "{{- end }}",
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        '{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>',
        "{{- if and $.Tools $last }}",
        "",
        "Given the following functions, please respond with a JSON for a function call "
        "with its proper arguments that best answers the given prompt.",
        "",
        'Respond in the format {"name": function name, "parameters": dictionary of '
        "argument name and its value}. Do not use variables.",
        "",
        "{{ range $.Tools }}",
        "{{- . }}",
        "{{ end }}",
        "Question: {{ .Content }}<|eot_id|>",
        "{{- else }}",
        "",
        "{{ .Content }}<|eot_id|>",
        "{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>",
        "",
        "{{ end }}",
        '{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>',
        "{{- if .ToolCalls }}",
        "{{ range .ToolCalls }}",
        '{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}',
        "{{- else }}",
        "",
        "{{ .Content }}",
        "{{- end }}{{ if not $last }}<|eot_id|>{{ end }}",
        '{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>',
        "",
        "{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>",
        "",
        "{{ end }}",
        "{{- end }}",
        "{{- end }}",
    ]
)

_SIZES: dict[str, tuple[str, int]] = {
    "1b": ("1.2B", 1321083232),
    "3b": ("3.2B", 2019393189),
    "8b": ("8.0B", 4920753328),
    "70b": ("70.6B", 42520413916),
    "405b": ("405.9B", 243323423640),
}
_DEFAULT_SIZE = {"3.1": "8b", "3.2": "3b", "3.3": "70b"}


def normalize_name(name: str) -> str:
    """`llama3.1` → `llama3.1:latest`, the way Ollama completes a name without a tag."""
    base = name.rsplit("/", 1)[-1]
    return name if ":" in base else f"{name}:latest"


def family_of(name: str) -> Family | None:
    """The Llama 3.x release a model name refers to, if any."""
    match = re.search(r"llama-?3\.([123])", name.lower())
    if match is None:
        return None
    return {"1": "3.1", "2": "3.2", "3": "3.3"}[match.group(1)]  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class EmulatedModel:
    """A model the emulator has "pulled". Build one with `EmulatedModel.llama(name)`."""

    name: str
    family: Family | None = "3.1"
    context_length: int = 131072
    capabilities: tuple[str, ...] = ("completion", "tools")
    parameter_size: str = "8.0B"
    quantization_level: str = "Q4_K_M"
    size: int = 4920753328
    template: str = LLAMA31_TEMPLATE
    stop: tuple[str, ...] = LLAMA3_STOPS
    system: str = ""
    # The most context the server gives this model whatever a request asks (memory, a proxy):
    # longer prompts are truncated. None: requests get the `num_ctx` they ask for.
    max_num_ctx: int | None = None
    extra_model_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def llama(cls, name: str, **overrides: Any) -> EmulatedModel:
        """A published Llama 3.x model: family and size from the name (`llama3.2:1b`, ...)."""
        full = normalize_name(name)
        family = family_of(full) or "3.1"
        tag = full.rsplit(":", 1)[1]
        size_key = next((k for k in _SIZES if tag.startswith(k)), _DEFAULT_SIZE[family])
        parameter_size, size = _SIZES[size_key]
        values: dict[str, Any] = {
            "name": full,
            "family": family,
            "parameter_size": parameter_size,
            "size": size,
        }
        values.update(overrides)
        values["name"] = normalize_name(values["name"])
        return cls(**values)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def full_name(self) -> str:
        """The name Ollama uses in capability errors: `registry.ollama.ai/library/x:tag`."""
        if "/" in self.name:
            return self.name
        return f"registry.ollama.ai/library/{self.name}"

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def tags_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": MODIFIED_AT,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def parameters_text(self) -> str:
        # Go's `%-30s %#v` per Modelfile PARAMETER line.
        return "\n".join(f"{'stop':<30} {_go_quote(s)}" for s in self.stop)

    def show(self, *, with_capabilities: bool) -> dict[str, Any]:
        basename = {"3.1": "Meta-Llama-3.1", "3.2": "Llama-3.2", "3.3": "Llama-3.3"}
        model_info: dict[str, Any] = {
            "general.architecture": "llama",
            "general.basename": basename.get(self.family or "", self.name.split(":")[0]),
            "general.file_type": 15,
            "general.parameter_count": _parameter_count(self.parameter_size),
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.block_count": 32,
            "llama.context_length": self.context_length,
            "llama.embedding_length": 4096,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.bos_token_id": 128000,
            "tokenizer.ggml.eos_token_id": 128009,
            "tokenizer.ggml.merges": None,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "llama-bpe",
            "tokenizer.ggml.token_type": None,
            "tokenizer.ggml.tokens": None,
        }
        model_info.update(self.extra_model_info)
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            f"# To build a new Modelfile based on this, replace FROM with:\n# FROM {self.name}\n\n"
            f'FROM /usr/share/ollama/.ollama/models/blobs/sha256-{self.digest}\nTEMPLATE """'
            f'{self.template}"""\n' + "".join(f"PARAMETER stop {s}\n" for s in self.stop)
        )
        payload: dict[str, Any] = {
            "license": "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT",
            "modelfile": modelfile,
            "parameters": self.parameters_text(),
            "template": self.template,
            "details": self.details(),
            "model_info": model_info,
        }
        if self.system:
            payload["system"] = self.system
        if with_capabilities:
            payload["capabilities"] = list(self.capabilities)
        payload["modified_at"] = MODIFIED_AT
        return payload


def _parameter_count(size: str) -> int:
    return int(float(size.rstrip("B")) * 1_000_000_000)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def default_models() -> tuple[EmulatedModel, ...]:
    """`llama3.1:latest`, `llama3.2:latest` and `llama3.3:latest`."""
    return tuple(EmulatedModel.llama(n) for n in ("llama3.1", "llama3.2", "llama3.3"))


def keep_alive_seconds(keep_alive: Any) -> float:
    """How long a model stays loaded: `keep_alive` as Ollama reads it (seconds or "5m")."""
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, int | float):
        return float(keep_alive)
    text = str(keep_alive).strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "h", "m", "s"):
        if text.endswith(unit):
            with contextlib.suppress(ValueError):
                return float(text[: -len(unit)]) * units[unit]
    with contextlib.suppress(ValueError):
        return float(text)
    return 300.0


# --- the chat template ---------------------------------------------------------------------------

_TOOLS_SYSTEM = (
    "When you receive a tool call response, use the output to format an answer to the orginal "
    "user question.\n\nYou are a helpful assistant with tool calling capabilities."
)
_TOOLS_USER = (
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format "
    '{"name": function name, "parameters": dictionary of argument name and its value}. '
    "Do not use variables.\n\n"
)
_HEADER = "<|start_header_id|>{}<|end_header_id|>"


def _collate(
    messages: Sequence[Mapping[str, Any]], model_system: str
) -> tuple[str, list[dict[str, Any]]]:
    systems = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    if model_system and (not messages or messages[0].get("role") != "system"):
        systems.insert(0, model_system)
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("user", "assistant", "tool"):
            continue
        if merged and merged[-1]["role"] == role and role != "tool":
            previous = merged[-1]
            previous["content"] = f"{previous['content']}\n\n{message.get('content') or ''}"
            previous["tool_calls"] = [*previous["tool_calls"], *(message.get("tool_calls") or [])]
            continue
        merged.append(
            {
                "role": role,
                "content": str(message.get("content") or ""),
                "tool_calls": list(message.get("tool_calls") or []),
            }
        )
    return "\n\n".join(systems), merged


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    *,
    family: str | None,
    model_system: str = "",
) -> str:
    """The prompt Ollama's llama3.x template makes of `messages` (without the BOS)."""
    system, turns = _collate(messages, model_system)
    out: list[str] = []
    if family == "3.2":
        out.append(_HEADER.format("system") + "\n\nCutting Knowledge Date: December 2023\n\n")
        if system:
            out.append(system)
        if tools:
            out.append(_TOOLS_SYSTEM)
        out.append("<|eot_id|>")
    elif system or tools:
        out.append(_HEADER.format("system"))
        if system:
            out.append(f"\n\n{system}")
        if tools:
            out.append(f"\n\nCutting Knowledge Date: December 2023\n\n{_TOOLS_SYSTEM}")
        out.append("<|eot_id|>")
    for index, turn in enumerate(turns):
        last = index == len(turns) - 1
        content = turn["content"]
        if turn["role"] == "user":
            out.append(_HEADER.format("user"))
            if tools and last:
                listed = "".join(_go_json(tool) + "\n" for tool in tools)
                question = "" if family == "3.2" else "Question: "
                out.append(f"\n\n{_TOOLS_USER}{listed}\n{question}{content}<|eot_id|>")
            else:
                out.append(f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
        elif turn["role"] == "assistant":
            out.append(_HEADER.format("assistant"))
            if turn["tool_calls"]:
                out.append("\n")
                for call in turn["tool_calls"]:
                    function = call.get("function") or {}
                    arguments = json.dumps(
                        function.get("arguments") or {}, separators=(",", ":"), sort_keys=True
                    )
                    out.append(
                        f'\n{{"name": "{function.get("name", "")}", "parameters": {arguments}}}'
                    )
            else:
                out.append(f"\n\n{content}")
            if not last:
                out.append("<|eot_id|>")
        else:
            out.append(_HEADER.format("ipython") + f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
    return "".join(out)


def _go_json(value: Any) -> str:
    # Go's json.Marshal: compact, and <, > and & escaped.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
