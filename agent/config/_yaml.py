"""YAML text to plain Python values, remembering the line each value came from.

PyYAML's `safe_load` forgets positions, so this walks the composed node tree itself: every value
gets its path (`("tools", 2)`) mapped to a line, which is what lets a config error say
`config.yaml:7: tools[2]: ...`. `${VAR}` and `${VAR:-default}` are expanded here too, in string
values only (never in keys), before types are resolved, so `seed: ${SEED:-42}` is an integer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml.scanner

from agent.errors import ConfigError

__all__ = ["KeyPath", "SourceMap", "expand_env", "format_key", "load_yaml"]

KeyPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
# `$${` is the escape for a literal `${`; a lone `$` (prices, LaTeX `$$x$$`) is left alone.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class SourceMap:
    """Where each value of a YAML document was written: file name and 1-based lines by path."""

    file: str | None = None
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None

    def where(self, path: KeyPath) -> str:
        """`file:line: key` for messages; parts that are unknown are left out."""
        parts = []
        if self.file is not None:
            line = self.line(path)
            parts.append(self.file if line is None else f"{self.file}:{line}")
        key = format_key(path)
        if key:
            parts.append(key)
        return ": ".join(parts)


def format_key(path: KeyPath) -> str:
    """`("tools", 2, "timeout")` as `tools[2].timeout`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _EnvProblem(ValueError):
    pass


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}` (default when unset or empty); `$${` is a literal `${`.

    Raises `ValueError` naming the variable when one is unset and has no default.
    """

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            raise _EnvProblem("'${' is not closed; write ${NAME} or ${NAME:-default}")
        parsed = _BODY.fullmatch(body)
        if parsed is None:
            raise _EnvProblem(
                f"'{whole}' is not a variable reference; write ${{NAME}} or ${{NAME:-default}} "
                "(and $${ for a literal '${')"
            )
        name, default = parsed.group("name"), parsed.group("default")
        value = env.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            raise _EnvProblem(
                f"environment variable '{name}' is not set; set it, or give a default "
                f"with ${{{name}:-default}}"
            )
        return value

    return _TOKEN.sub(replace, text)


def load_yaml(
    text: str, *, file: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain values and the line of every value.

    Raises `ConfigError` for a syntax error (with its line and column), duplicate keys,
    non-scalar keys, recursive aliases and unset environment variables (all of them at once).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, file=file, env={} if env is None else env)
        value = None if node is None else builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, file) from exc
    except yaml.YAMLError as exc:
        where = f"{file}: " if file else ""
        raise ConfigError(f"{where}invalid YAML: {exc}", path=file) from exc
    finally:
        loader.dispose()
    if builder.problems:
        raise ConfigError("\n".join(builder.problems), path=file, problems=builder.problems)
    return value, SourceMap(file=file, lines=builder.lines)


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str | None) -> ConfigError:
    problem = (exc.problem or exc.context or "cannot be parsed").removeprefix("but ")
    context = exc.context if exc.problem else None
    mark: yaml.Mark | None
    if isinstance(exc, yaml.scanner.ScannerError) and exc.context_mark is not None:
        # The scanner notices late (often at the next line); the token it was reading began
        # at the context mark, which is the line to fix.
        mark, problem = exc.context_mark, f"{problem} {context}"
    else:
        mark = exc.problem_mark or exc.context_mark
        if (
            context
            and exc.context_mark is not None
            and exc.context_mark.line != getattr(mark, "line", None)
        ):
            problem += f" ({context} at line {exc.context_mark.line + 1})"
        elif context:
            problem += f" {context}"
    where = file or "<config>"
    if mark is not None:
        where += f":{mark.line + 1}"
        lines = text.splitlines()
        source = lines[mark.line].strip() if mark.line < len(lines) else ""
        if source:
            shown = source if len(source) <= 40 else source[:39] + "…"
            problem += f", in '{shown}'"
    return ConfigError(f"{where}: invalid YAML: {problem}", path=file)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, *, file: str | None, env: Mapping[str, str]):
        self.loader = loader
        self.file = file
        self.env = env
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[str] = []
        self._open: set[int] = set()

    def _problem(self, path: KeyPath, message: str, *, line: int | None = None) -> None:
        lines = self.lines if line is None else {path: line}
        where = SourceMap(file=self.file, lines=lines).where(path)
        self.problems.append(f"{where}: {message}" if where else message)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._open:
            self._problem(path, "an alias refers to itself; YAML recursion is not allowed here")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self._open.discard(id(node))
        raise AssertionError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        if node.tag == _STR_TAG and "$" in node.value:
            try:
                text = expand_env(node.value, self.env)
            except _EnvProblem as exc:
                self._problem(path, str(exc))
                return None
            if text != node.value and node.style is None:
                # An unquoted value is typed after expansion, as if it had been written out.
                tag = self.loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
                node = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark, style=None)
            else:
                return text
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first_line:
                message = f"duplicate key '{key}' (first at line {first_line[key]})"
                self._problem((*path, key), message, line=line)
            else:
                first_line[key] = line
        # `<<: *base` merges; keys written in this mapping win over merged ones.
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(
                    path, f"keys must be plain names (line {key_node.start_mark.line + 1})"
                )
                continue
            # The key's text, not its YAML 1.1 type: `on:` and `yes:` stay names, not booleans.
            key = key_node.value
            child = (*path, key)
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, child)
        return out
