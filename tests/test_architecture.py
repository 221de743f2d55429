"""A package's `__init__` is its boundary: no module imports another package's private module.

`lint-imports` enforces the layers (pyproject.toml); this checks what import-linter cannot
express: `agent.loop` may import `agent.backends`, but not `agent.backends._wire`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The folder each top-level name is installed from (tools/ installs as llama_agent_tools).
PACKAGES = {"agent": ROOT / "agent", "llama_agent_tools": ROOT / "tools"}


def _modules() -> Iterator[tuple[str, Path, str]]:
    """Each module's dotted name, file, and the file as `folder/relative/path.py`."""
    for name, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            parts = [name, *relative.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path, f"{folder.name}/{relative}"


def _imported(module: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each import statement's line and the modules it may name, the named module first."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from agent.backends import _wire` names a module too
            yield node.lineno, [target, *(f"{target}.{alias.name}" for alias in node.names)]


def _private_owner(target: str) -> str | None:
    """The package whose private module `target` is (None: a public name, or not ours)."""
    parts = target.split(".")
    if parts[0] not in PACKAGES:
        return None
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def private_imports() -> list[str]:
    """`file:line: module` for each import of a private module from outside its package."""
    found = []
    for module, path, shown in _modules():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, targets in _imported(module, path):
            for target in targets:
                owner = _private_owner(target)
                if owner is not None and package != owner and not package.startswith(owner + "."):
                    found.append(f"{shown}:{line}: {target}")
                    break
    return found


def test_no_module_imports_another_packages_private_module() -> None:
    assert private_imports() == []


def test_the_check_sees_a_private_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = tmp_path / "agent"
    (agent / "loop").mkdir(parents=True)
    (agent / "loop" / "__init__.py").write_text("")
    (agent / "loop" / "_run.py").write_text(
        "from agent.backends._wire import x\nfrom agent.backends import _wire\n"
        "from agent.loop._calls import y\nfrom . import _calls\n"
    )
    monkeypatch.setattr(
        "tests.test_architecture.PACKAGES", {"agent": agent, "llama_agent_tools": ROOT / "tools"}
    )
    assert private_imports() == [
        "agent/loop/_run.py:1: agent.backends._wire",
        "agent/loop/_run.py:2: agent.backends._wire",
    ]  # and neither `agent.loop._calls` nor `from . import _calls`: the package's own
