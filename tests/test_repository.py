"""The repository stands alone: nothing in it reads a path outside it.

A fresh clone, with nothing beside it, must pass its own tests, run its benchmarks and examples.
So no source, test, benchmark or example names a file outside the repository: not the design
folder the project grew beside (its `llama3` cases now live in `tests/llama3/data/`), not a
relative path that climbs above the root, not `Path(__file__)` walked up past it. The sources
are read as text, so a path in a docstring, a YAML comment or a README counts too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("agent", "bench", "examples", "tests", "tools")
TEXT_SUFFIXES = frozenset(
    {".py", ".md", ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".sh"}
)

# Written in pieces so that this file does not match itself.
_OUTSIDE_FOLDER = re.compile(re.escape("../" + "shared") + "|" + re.escape("shared" + "/llama3"))
# `../x` or `../../x` (not `.../`, an ellipsis in a path): resolved from the file's folder.
_RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+)")
# A `".."` path component in code: `Path(...) / ".."`, `os.path.join(x, "..")`, `os.pardir`.
_PARENT_COMPONENT = re.compile(r"""(["'])\.\.\1|os\.pardir""")
# `Path(__file__).resolve().parents[3]` or `Path(__file__).parent.parent`.
_FILE_PARENTS = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\))?((?:\.parent\b)+|\.parents\[(\d+)\])"
)


def _sources() -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                files.append(path)
    return files


def outside_references(path: Path, text: str) -> list[str]:
    """What in `text` (the content of `path`, a file of the repository) points outside it."""
    found: list[str] = []
    folder = path.parent
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path.relative_to(ROOT)}:{number}"
        if _OUTSIDE_FOLDER.search(line):
            found.append(f"{where}: names the folder beside the repository: {line.strip()}")
        for m in _RELATIVE.finditer(line):
            target = (folder / m.group(1)).resolve()
            if not target.is_relative_to(ROOT):
                found.append(f"{where}: relative path above the root: {line.strip()}")
        if path.suffix == ".py":
            if _PARENT_COMPONENT.search(line):
                found.append(f"{where}: a '..' path component: {line.strip()}")
            for m in _FILE_PARENTS.finditer(line):
                # parents[k] is k folders above the file's own; `.parent` n times is parents[n-1].
                up = int(m.group(2)) if m.group(2) is not None else m.group(1).count(".parent") - 1
                if up > len(path.relative_to(ROOT).parts) - 1:
                    found.append(f"{where}: Path(__file__) walked above the root: {line.strip()}")
    return found


def test_nothing_refers_to_a_path_outside_the_repository() -> None:
    problems: list[str] = []
    sources = _sources()
    assert len(sources) > 100  # the scan really reads the tree
    for path in sources:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        problems.extend(outside_references(path, text))
    assert not problems, "paths outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("tests/llama3/cases.py", 'DATA = Path(__file__).resolve().parents[2] / ".." / "x"'),
        ("tests/llama3/cases.py", "DATA = Path(__file__).resolve().parents[3]"),
        ("bench/x.py", "ROOT = Path(__file__).parent.parent.parent"),
        ("agent/llama3/templates/README.md", "see `../../../../design/FORMAT.md`"),
        ("tests/x.py", '"""The cases in ' + "../" + 'shared/llama3."""'),
    ],
)
def test_the_scan_catches_each_kind_of_outside_path(relative: str, text: str) -> None:
    assert outside_references(ROOT / relative, text)


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("tests/llama3/cases.py", 'DATA = Path(__file__).resolve().parent / "data"'),
        ("tests/config/test_build.py", "ROOT = Path(__file__).resolve().parents[2]"),
        ("bench/_common.py", "ROOT = Path(__file__).resolve().parent.parent"),
        ("examples/research/agent.yaml", "# $schema=../../config.schema.json"),
        ("tests/x.py", 'SOURCE = "wrmsr/omlish ommlx/.../test_llama31.py"'),
    ],
)
def test_the_scan_accepts_paths_inside_the_repository(relative: str, text: str) -> None:
    assert outside_references(ROOT / relative, text) == []
