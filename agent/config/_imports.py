"""Find a custom tool's object from its `package.module:function` path, relative to the config.

Every failure says why in one line: the module is not there, it imports something missing, it
raised while importing, the attribute is misspelt, or a name shadows a module elsewhere.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.config._spec import suggest

__all__ = ["ImportProblem", "import_object"]


class ImportProblem(Exception):
    """Why an import path could not be resolved (the message is one line)."""


def import_object(path: str, *, base_dir: Path | None) -> object:
    """Import `module:attr` (attr may be dotted), looking in `base_dir` first."""
    module_name, _, attr_path = path.partition(":")
    with _search_first(base_dir):
        module = _import_module(module_name, base_dir)
    obj: object = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = suggest(attr, names)
            also = f" (did you mean '{hint}'?)" if hint else ""
            raise ImportProblem(f"'{walked}' has no attribute '{attr}'{also}")
        obj = getattr(obj, attr)
        walked += f"{'.' if walked != module_name else ':'}{attr}"
    return obj


@contextmanager
def _search_first(base_dir: Path | None) -> Iterator[None]:
    # Only for the import itself: a config folder left on sys.path would shadow other modules
    # (a `random.py` beside the config) for the rest of the process.
    entry = str(base_dir) if base_dir is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.insert(0, str(entry))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(entry))


def _import_module(name: str, base_dir: Path | None) -> object:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            where = f" in {base_dir} or" if base_dir is not None else ""
            raise ImportProblem(
                f"cannot import '{name}': no module named '{missing}'{where} on the Python path"
            ) from exc
        raise ImportProblem(
            f"cannot import '{name}': it needs '{missing}', which is not installed ({exc})"
        ) from exc
    except SyntaxError as exc:
        where = f"{Path(exc.filename).name}:{exc.lineno}" if exc.filename else "?"
        raise ImportProblem(f"cannot import '{name}': syntax error at {where}: {exc.msg}") from exc
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise ImportProblem(
            f"cannot import '{name}': it raised {type(exc).__name__}: {exc}{where}"
        ) from exc
    _check_not_shadowed(name, module, base_dir)
    return module


def _check_not_shadowed(name: str, module: object, base_dir: Path | None) -> None:
    # `tools.py` beside a config would lose to the already-imported built-in `tools` package,
    # and the error would otherwise be a baffling missing attribute.
    if base_dir is None:
        return
    top = name.split(".")[0]
    local = [base_dir / f"{top}.py", base_dir / top / "__init__.py"]
    local_file = next((p for p in local if p.is_file()), None)
    if local_file is None:
        return
    top_module = sys.modules.get(top)
    loaded = getattr(top_module, "__file__", None)
    if loaded is not None and Path(loaded).resolve() != local_file.resolve():
        raise ImportProblem(
            f"'{top}' is already imported from {loaded}, so {local_file} is not used; "
            "rename your module"
        )
