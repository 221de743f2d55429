"""Read a YAML config into an `AgentConfig`: the text, its source positions, its problems.

PyYAML's `safe_load` forgets positions, so this walks the composed node tree itself: every value
gets its path (`("tools", 2)`) mapped to a line, which is what lets a config error say
`config.yaml:7: tools[2]: ...`. `${VAR}` and `${VAR:-default}` are expanded here too, in string
values only (never in keys), before types are resolved, so `seed: ${SEED:-42}` is an integer.
Pydantic's own messages ("Input should be a valid integer") say neither the key in YAML terms
nor what was written; the problems here say both, and suggest the closest allowed value for a
misspelling.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
import yaml.scanner
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agent.config._build import build_agent
from agent.config._spec import TOOL_TAGS, AgentConfig, KeyPath, SourceMap, suggest
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.loop import Agent

__all__ = [
    "config_json_schema",
    "describe_value",
    "expand_env",
    "load_agent",
    "load_config",
    "load_yaml",
    "parse_config",
    "problems_from_validation",
]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# --- loading -----------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Read and validate a YAML config file.

    `${VAR}` and `${VAR:-default}` are expanded from `env` (default: `os.environ`). Custom tools
    are not imported yet (`load_agent` does that), so this never runs user code.

    Raises `ConfigError`; its message has one `file:line: key: problem` line per problem.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{name}: no such file", path=name) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{name}: is a directory, not a YAML file", path=name) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason})", path=name) from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})", path=name) from exc
    return parse_config(text, file=name, base_dir=Path(name).resolve().parent, env=env)


def parse_config(
    text: str,
    *,
    file: str | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Validate YAML text as a config. `file` names it in messages; custom tools are imported
    from `base_dir` (default: nowhere beyond the Python path)."""
    data, source = load_yaml(text, file=file, env=os.environ if env is None else env)
    where = f"{file}:1: " if file else ""
    if data is None:
        raise ConfigError(f"{where}the config is empty; it needs at least `model:`", path=file)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}a config is a mapping of keys (model:, tools:, ...), "
            f"got {describe_value(data)}",
            path=file,
        )
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, data, source)
        raise ConfigError("\n".join(problems), path=file, problems=problems) from exc
    return _attach(config, source, base_dir)


def _attach(config: AgentConfig, source: SourceMap, base_dir: Path | None) -> AgentConfig:
    config._source = source
    config._base_dir = base_dir
    return config


def load_agent(path: str | os.PathLike[str], **overrides: Any) -> Agent:
    """Build an `Agent` from a YAML config file.

    `overrides` are `Agent` keyword arguments that win over the file, for instance
    `load_agent("config.yaml", host="http://gpu-box:11434")` or `backend=my_backend`.
    Raises `ConfigError` (invalid file, a custom tool that does not import, a `tool_choice`
    naming no tool). A `code` tool without a working bubblewrap (and without `sandbox: none`)
    is still built, with a `RuntimeWarning`: its calls fail, saying how to install it.
    """
    return build_agent(load_config(path), **overrides)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (Draft 2020-12), for editors and validators."""
    schema = AgentConfig.model_json_schema(by_alias=True)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "llama-agent config",
        **{k: v for k, v in schema.items() if k != "title"},
    }


# --- YAML with positions -------------------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
# `$${` is the escape for a literal `${`; a lone `$` (prices, LaTeX `$$x$$`) is left alone.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


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


# --- problems --------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "sequence_str": "a list",  # a string where a `Sequence[str]` goes (`stop:`)
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "nothing (null)",
}

_BOUNDS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}


def describe_value(value: Any) -> str:
    """A written YAML value, as a message shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def problems_from_validation(exc: ValidationError, data: Any, source: SourceMap) -> list[str]:
    """One message per problem, in file order; a union's branches make one message."""
    explained: list[tuple[KeyPath, str]] = []
    expected: dict[KeyPath, tuple[list[str], Any]] = {}
    for error in exc.errors():
        path = _clean(error["loc"], data, missing=error["type"] == "missing")
        kind = error["type"]
        if kind == "is_instance_of" and (error.get("ctx") or {}).get("class") == "Sequence":
            kind = "list_type"  # a runtime `Sequence[str]` field given a number or a mapping
        if kind in _EXPECTED:
            # `str | float` fails once per branch: say "expected a string or a number" once.
            wanted, _ = expected.setdefault(path, ([], error.get("input")))
            if path not in [p for p, _ in explained]:
                explained.append((path, ""))
            if _EXPECTED[kind] not in wanted:
                wanted.append(_EXPECTED[kind])
            continue
        explained.extend(_explain(error, path))
    found: list[tuple[int, str]] = []
    for path, message in explained:
        if not message:
            wanted, value = expected[path]
            message = f"expected {' or '.join(wanted)}, got {describe_value(value)}"
        where = source.where(path)
        text = f"{where}: {message}" if where else message
        if all(text != seen for _, seen in found):
            found.append((source.line(path) or 0, text))
    found.sort(key=lambda item: item[0])
    return [text for _, text in found]


def _clean(loc: tuple[str | int, ...], data: Any, *, missing: bool) -> KeyPath:
    """The part of pydantic's location that names keys and items actually written."""
    # A `tools` entry's location carries the union tag that picked its form; YAML has no such key.
    if len(loc) >= 3 and loc[0] == "tools" and isinstance(loc[1], int) and loc[2] in TOOL_TAGS:
        # A toolset entry's form carries a second tag: the toolset's name, before the same key.
        nested = loc[2] == "toolset" and len(loc) >= 5 and loc[3] == loc[4]
        loc = loc[:2] + loc[4 if nested else 3 :]
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        found, child = _child(node, part)
        if found:
            node = child
        elif not (missing and i == len(loc) - 1):  # the missing key itself is not written
            break  # a union branch's name, not a key
        path.append(part)
    return tuple(path)


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _explain(error: ErrorDetails, path: KeyPath) -> list[tuple[KeyPath, str]]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "unknown_keys":
        allowed = list(ctx["allowed"])
        out = []
        for key in ctx["keys"]:
            hint = suggest(str(key), allowed)
            why = f" (did you mean '{hint}'?)" if hint else f"; allowed: {', '.join(allowed)}"
            out.append(((*path, key), f"unknown key '{key}'{why}"))
        return out
    if kind == "missing":
        return [(path[:-1], f"missing required key '{path[-1]}'")]
    if kind == "literal_error":
        choices = _literal_choices(ctx.get("expected", ""))
        hint = suggest(value, choices) if isinstance(value, str) else None
        listed = ", ".join(choices) if choices else str(ctx.get("expected", ""))
        why = f" (did you mean '{hint}'?)" if hint else f"; allowed: {listed}"
        return [(path, f"{describe_value(value)} is not allowed{why}")]
    if kind in _BOUNDS:
        key, template = _BOUNDS[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return [(path, f"{template.format(bound)}, got {describe_value(value)}")]
    if kind == "string_too_short":
        return [(path, "must not be empty")]
    message = error["msg"]
    if not kind.startswith(("unknown_", "import_", "duration", "tool_")):
        message = message[:1].lower() + message[1:]
    return [(path, message)]


def _literal_choices(expected: str) -> list[str]:
    # pydantic writes them as "'bwrap' or 'none'" / "'a', 'b' or 'c'"
    return [part.strip().strip("'") for part in expected.replace(" or ", ", ").split(",") if part]
