"""`llama-agent check`: is everything a run needs in place? One line per thing, and why not.

Every host of the model server is asked (its engine's version, the model, its context size);
a pool's hosts are shown as a table, and `--json` prints the findings and the hosts as JSON.

Web search is probed (`probe_web_search`, one HEAD request to the search engine) only when the
agent has the search tool; an unreachable engine is a warning, as the agent runs without it.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich import box
from rich.markup import escape
from rich.table import Table

from agent.backends import Backend, ModelInfo
from agent.cli._app import ExitCode, exit_code_for_error
from agent.cli._output import Printer, pull_model
from agent.config import (
    AgentConfig,
    ToolsetEntry,
    build_agent,
    build_backend,
    load_config,
    section_settings,
    toolsets,
)
from agent.errors import ConfigError, LlamaAgentError, ModelNotFoundError

__all__ = ["SEARCH_ENGINES", "Finding", "HostRow", "probe_web_search", "run_checks"]

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One line of the check: what was looked at, the verdict, and the detail."""

    what: str
    verdict: Verdict
    detail: str
    code: ExitCode = ExitCode.OK  # the exit code when this fails


class _Report:
    def __init__(self, printer: Printer, *, quiet: bool = False) -> None:
        self.printer = printer
        self.quiet = quiet  # `--json`: the findings go out as JSON at the end
        self.findings: list[Finding] = []

    def add(self, what: str, verdict: Verdict, detail: str, code: ExitCode = ExitCode.OK) -> None:
        finding = Finding(what=what, verdict=verdict, detail=detail, code=code)
        self.findings.append(finding)
        if self.quiet:
            return
        lines = detail.splitlines() or [""]
        self.printer.note(f"{self.printer.mark(verdict)} [bold]{what}[/]: {escape(lines[0])}")
        for line in lines[1:]:
            self.printer.note(f"       {escape(line)}")

    @property
    def exit_code(self) -> ExitCode:
        failed = [f.code for f in self.findings if f.verdict == "fail"]
        return failed[0] if failed else ExitCode.OK


async def run_checks(
    path: Path,
    printer: Printer,
    *,
    pull: bool,
    apply: Callable[[AgentConfig], AgentConfig] = lambda config: config,
    as_json: bool = False,
) -> ExitCode:
    """Check the config, the agent it builds, every host of the model server, the model and the
    sandbox; a line for each (`apply`: the command line's changes to the config). `as_json`:
    the findings and the hosts as one JSON object on stdout instead."""
    report = _Report(printer, quiet=as_json)
    hosts: list[HostRow] = []
    try:
        config = apply(load_config(path))
    except ConfigError as exc:
        report.add("config", "fail", str(exc), ExitCode.CONFIG)
        return _finish(report, hosts, as_json=as_json)
    report.add("config", "ok", f"{path} is valid (model {config.model})")
    with warnings.catch_warnings():
        # The code tool's sandbox warns when it is made (`sandbox: none`, or no bubblewrap);
        # the sandbox line below says it once.
        warnings.filterwarnings("ignore", message="tools.code", category=RuntimeWarning)
        await _check_agent(config, report)
        hosts = await _check_server(config, report, pull=pull)
        _check_toolsets(config, report)
        await _check_search(config, report)
    return _finish(report, hosts, as_json=as_json)


def _finish(report: _Report, hosts: list[HostRow], *, as_json: bool) -> ExitCode:
    code = report.exit_code
    if as_json:
        payload = {
            "ok": code == ExitCode.OK,
            "exit_code": int(code),
            "findings": [
                {"what": f.what, "verdict": f.verdict, "detail": f.detail} for f in report.findings
            ],
            "hosts": [dataclasses.asdict(row) for row in hosts],
        }
        report.printer.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return code


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


@dataclass(frozen=True, kw_only=True)
class HostRow:
    """One host of the model server as `check` found it (a row of its table and JSON)."""

    url: str
    reachable: bool
    version: str | None = None
    model_present: bool | None = None  # None: not asked (the host did not answer)
    context_length: int | None = None
    family: str | None = None
    error: str | None = None


async def _check_server(config: AgentConfig, report: _Report, *, pull: bool) -> list[HostRow]:
    """Every host: reachable (its engine's version), the model there, its context size."""
    from agent.backends import PoolBackend

    engine = config.engine
    try:
        backend = build_backend(config)
    except ConfigError as exc:
        report.add(engine, "fail", str(exc), ExitCode.CONFIG)
        return []
    hosts = backend.backends if isinstance(backend, PoolBackend) else (backend,)
    rows: list[HostRow] = []
    infos: list[ModelInfo] = []
    failures: list[tuple[LlamaAgentError, ExitCode]] = []
    try:
        for host in hosts:
            row, info, failure = await _check_host(host, config.model, report.printer, pull=pull)
            rows.append(row)
            if info is not None:
                infos.append(info)
            if failure is not None:
                failures.append(failure)
    finally:
        await backend.aclose()
    if len(rows) == 1:
        _single_host(engine, rows[0], failures, report)
    else:
        _pool_lines(engine, rows, failures, report)
    if infos:
        _model_lines(config, infos[0], report)
    return rows


async def _check_host(
    host: Backend, model: str, printer: Printer, *, pull: bool
) -> tuple[HostRow, ModelInfo | None, tuple[LlamaAgentError, ExitCode] | None]:
    from agent.backends import OllamaBackend

    url = str(getattr(host, "url", ""))
    ask_version = getattr(host, "version", None)
    try:
        version = str(await ask_version()) if ask_version is not None else None
    except LlamaAgentError as exc:
        row = HostRow(url=url, reachable=False, error=str(exc))
        return row, None, (exc, ExitCode.OLLAMA_UNREACHABLE)  # no answer, whatever the cause
    try:
        try:
            info = await host.model_info(model)
        except ModelNotFoundError:
            if not pull or not isinstance(host, OllamaBackend):
                raise
            await pull_model(host, model, printer)
            info = await host.model_info(model)
    except ModelNotFoundError as exc:
        row = HostRow(url=url, reachable=True, version=version, model_present=False, error=str(exc))
        return row, None, (exc, ExitCode.MODEL_MISSING)
    except LlamaAgentError as exc:
        row = HostRow(url=url, reachable=True, version=version, error=str(exc))
        return row, None, (exc, ExitCode.ERROR)
    row = HostRow(
        url=url,
        reachable=True,
        version=version,
        model_present=True,
        context_length=info.context_length,
        family=info.family,
    )
    return row, info, None


def _single_host(
    engine: str, row: HostRow, failures: list[tuple[LlamaAgentError, ExitCode]], report: _Report
) -> None:
    if not row.reachable:
        exc, code = failures[0]
        report.add(engine, "fail", str(exc), code)
        return
    version = f", version {row.version}" if row.version is not None else ""
    report.add(engine, "ok", f"{row.url} answers{version}")
    if failures:
        exc, code = failures[0]
        report.add("model", "fail", str(exc), code)


def _pool_lines(
    engine: str,
    rows: list[HostRow],
    failures: list[tuple[LlamaAgentError, ExitCode]],
    report: _Report,
) -> None:
    """One line for the pool (the runs go to the hosts that work), and the table of hosts."""
    good = [r for r in rows if r.model_present]
    bad = [r for r in rows if not r.model_present]
    summary = f"{len(good)} of {len(rows)} hosts answer with the model"
    why = "\n".join(f"{r.url}: {r.error}" for r in bad)
    if not good:
        _, code = failures[0]
        report.add(engine, "fail", f"{summary}\n{why}", code)
    elif bad:
        report.add(engine, "warn", f"{summary}; runs go to the others\n{why}")
    else:
        report.add(engine, "ok", summary)
    if report.quiet:
        return
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("host", "reachable", "version", "model", "context"):
        table.add_column(column)
    for r in rows:
        present = {True: "yes", False: "missing", None: "?"}[r.model_present]
        table.add_row(
            r.url,
            "yes" if r.reachable else "no",
            r.version or "-",
            present,
            str(r.context_length) if r.context_length is not None else "-",
        )
    report.printer.err.print(table)


def _model_lines(config: AgentConfig, info: ModelInfo, report: _Report) -> None:
    size = config.ollama.options.num_ctx if config.engine == "ollama" else None
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
    elif not info.capabilities and config.engine != "ollama":
        report.add("tool calling", "ok", "prompts are sent raw in Llama's format")
    else:
        report.add(
            "tool calling",
            "warn",
            "the model does not declare tool support; prompts are sent raw in Llama's format, "
            "but a model not trained for tools will call them poorly",
        )


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
