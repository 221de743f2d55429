"""`llama-agent check`: is everything a run needs in place? One line per thing, and why not.

Web search is probed (`probe_web_search`, one HEAD request to the search engine) only when the
agent has the search tool; an unreachable engine is a warning, as the agent runs without it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.markup import escape

from agent.cli._app import ExitCode, exit_code_for_error
from agent.cli._output import Printer, pull_model
from agent.config import (
    AgentConfig,
    ToolsetEntry,
    build_agent,
    load_config,
    section_settings,
    toolsets,
)
from agent.errors import ConfigError, LlamaAgentError, ModelNotFoundError

__all__ = ["SEARCH_ENGINES", "Finding", "probe_web_search", "run_checks"]

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One line of the check: what was looked at, the verdict, and the detail."""

    what: str
    verdict: Verdict
    detail: str
    code: ExitCode = ExitCode.OK  # the exit code when this fails


class _Report:
    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.findings: list[Finding] = []

    def add(self, what: str, verdict: Verdict, detail: str, code: ExitCode = ExitCode.OK) -> None:
        finding = Finding(what=what, verdict=verdict, detail=detail, code=code)
        self.findings.append(finding)
        lines = detail.splitlines() or [""]
        self.printer.note(f"{self.printer.mark(verdict)} [bold]{what}[/]: {escape(lines[0])}")
        for line in lines[1:]:
            self.printer.note(f"       {escape(line)}")

    @property
    def exit_code(self) -> ExitCode:
        failed = [f.code for f in self.findings if f.verdict == "fail"]
        return failed[0] if failed else ExitCode.OK


async def run_checks(path: Path, printer: Printer, *, host: str | None, pull: bool) -> ExitCode:
    """Check the config, the agent it builds, Ollama, the model and the sandbox; a line for each."""
    report = _Report(printer)
    try:
        config = load_config(path)
    except ConfigError as exc:
        report.add("config", "fail", str(exc), ExitCode.CONFIG)
        return report.exit_code
    report.add("config", "ok", f"{path} is valid (model {config.model})")
    with warnings.catch_warnings():
        # The code tool's sandbox warns when it is made (`sandbox: none`, or no bubblewrap);
        # the sandbox line below says it once.
        warnings.filterwarnings("ignore", message="tools.code", category=RuntimeWarning)
        await _check_agent(config, report)
        await _check_server(config, report, host=host, pull=pull)
        _check_toolsets(config, report)
        await _check_search(config, report)
    return report.exit_code


async def _check_agent(config: AgentConfig, report: _Report) -> None:
    """Build and open the agent as `run` would (tools imported, MCP servers started and listed,
    `tool_choice` checked), without a request."""
    try:
        agent = build_agent(config)
    except LlamaAgentError as exc:
        report.add("tools", "fail", str(exc), exit_code_for_error(exc))
        return
    try:
        await agent.open()  # MCP servers start here: one that does not says why, stderr included
        names = ", ".join(t.name for t in agent.tools) or "none"
        report.add("tools", "ok", f"{len(agent.tools)}: {names}")
    except LlamaAgentError as exc:
        report.add("tools", "fail", str(exc), exit_code_for_error(exc))
    finally:
        await agent.aclose()


async def _check_server(
    config: AgentConfig, report: _Report, *, host: str | None, pull: bool
) -> None:
    from agent.backends import OllamaBackend

    backend = OllamaBackend(host or config.ollama.host)
    try:
        try:
            version = await backend.version()
        except LlamaAgentError as exc:
            report.add("ollama", "fail", str(exc), ExitCode.OLLAMA_UNREACHABLE)
            return
        report.add("ollama", "ok", f"{backend.url} answers, version {version}")
        try:
            info = await backend.model_info(config.model)
        except ModelNotFoundError as exc:
            if not pull:
                report.add("model", "fail", str(exc), ExitCode.MODEL_MISSING)
                return
            await pull_model(backend, config.model, report.printer)
            info = await backend.model_info(config.model)
        except LlamaAgentError as exc:
            report.add("model", "fail", str(exc), ExitCode.ERROR)
            return
        size = config.ollama.options.num_ctx
        context = f"context {info.context_length} tokens"
        if size is not None and size < info.context_length:
            context += f" (num_ctx {size} from the config)"
        family = f"Llama {info.family}" if info.family != "unknown" else "not a Llama 3.x model"
        verdict: Verdict = "ok" if info.family != "unknown" else "warn"
        report.add("model", verdict, f"{info.name}: {family}, {context}")
        if size is not None and size > info.context_length:
            report.add(
                "context",
                "fail",
                f"num_ctx {size} in the config is over {info.name}'s context length of "
                f"{info.context_length} tokens; set ollama.options.num_ctx to "
                f"{info.context_length} or less",
                ExitCode.CONFIG,
            )
        if info.supports_tools:
            report.add("tool calling", "ok", "the model's template declares tool support")
        else:
            report.add(
                "tool calling",
                "warn",
                "the model does not declare tool support; prompts are sent raw in Llama's format, "
                "but a model not trained for tools will call them poorly",
            )
    finally:
        await backend.aclose()


def _listed(config: AgentConfig) -> set[str]:
    return {
        entry.toolset if isinstance(entry, ToolsetEntry) else entry
        for entry in config.tools
        if isinstance(entry, ToolsetEntry) or (isinstance(entry, str) and ":" not in entry)
    }


def _check_toolsets(config: AgentConfig, report: _Report) -> None:
    """What the listed toolsets need to work (the code tools' sandbox), each on its line."""
    listed = _listed(config)
    for name, toolset in toolsets().items():
        if toolset.check is None:
            continue
        if name not in listed:
            what = toolset.section or name
            report.add(what, "ok", f"not needed (no {name} tool)")
            continue
        found = toolset.check(section_settings(config, name))
        # The agent still runs (search, math) when one fails; only that toolset's calls fail.
        code = ExitCode.CONFIG if found.verdict == "fail" else ExitCode.OK
        report.add(found.what, found.verdict, found.detail, code)


# Where each `ddgs` backend sends its queries; a backend not listed is probed at DuckDuckGo.
SEARCH_ENGINES = {
    "bing": "https://www.bing.com",
    "brave": "https://search.brave.com",
    "duckduckgo": "https://html.duckduckgo.com",
    "google": "https://www.google.com",
    "mojeek": "https://www.mojeek.com",
    "wikipedia": "https://en.wikipedia.org",
    "yahoo": "https://search.yahoo.com",
    "yandex": "https://yandex.com",
}


PROBE_SECONDS = 5.0


async def probe_web_search(url: str) -> str | None:
    """None when `url` answers an HTTP request within `PROBE_SECONDS`; else why not."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=PROBE_SECONDS) as client:
            await client.head(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def _check_search(config: AgentConfig, report: _Report) -> None:
    if "search" not in _listed(config):
        report.add("web search", "ok", "not needed (no search tool)")
        return
    backend = "duckduckgo"
    for entry in config.tools:
        if isinstance(entry, ToolsetEntry) and entry.toolset == "search" and entry.settings:
            backend = str(getattr(entry.settings, "backend", None) or backend)
    engine = backend.split(",")[0].strip()
    url = SEARCH_ENGINES.get(engine, SEARCH_ENGINES["duckduckgo"])
    why = await probe_web_search(url)
    if why is None:
        report.add("web search", "ok", f"{url} is reachable")
    else:
        report.add(
            "web search",
            "warn",
            f"{url} is unreachable ({why}); the agent runs, but its searches fail",
        )
