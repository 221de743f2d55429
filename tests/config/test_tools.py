"""Tools from a config: built-ins with their settings, and custom tools by import path,
found relative to the config file's folder, with one-line reasons when they do not import."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_agent, load_config
from agent.config._build import build_tools
from agent.errors import ConfigError
from agent.toolkit import Tool

GOOD_MODULE = '''
from agent import tool


def lookup_order(order_id: str) -> str:
    """Find an order by id.

    Args:
        order_id: The order's id, like A-123.
    """
    return f"order {order_id}: shipped"


@tool(timeout=7)
def refund(order_id: str, amount: float) -> str:
    """Refund part of an order.

    Args:
        order_id: The order's id.
        amount: How much to refund.
    """
    return "ok"


SUITE = [refund]
NOT_A_TOOL = 42
'''


@pytest.fixture(autouse=True)
def _forget_imported_modules() -> Iterator[None]:
    # Each test writes its own modules under the same names.
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    assert sys.path == path, "the config folder must not stay on sys.path"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return folder / "config.yaml"


def tools_of(folder: Path, config: str, **modules: str) -> list[Tool]:
    files = {"config.yaml": config, **{f"{k.replace('__', '/')}.py": v for k, v in modules.items()}}
    return list(build_tools(load_config(os.path.relpath(write(folder, files)))))


def problem(folder: Path, monkeypatch: pytest.MonkeyPatch, config: str, **modules: str) -> str:
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError) as caught:
        tools_of(folder, config, **modules)
    return str(caught.value)


@pytest.mark.filterwarnings("ignore:tools.code:RuntimeWarning")
def test_builtins_get_their_settings(tmp_path: Path) -> None:
    from llama_agent_tools import code_tools, math_tools, search_tools

    built = tools_of(
        tmp_path,
        "model: x\ntools:\n  - search: {max_results: 2, timeout: 4, names: both}\n"
        "  - math: {names: both}\n"
        "  - code: {timeout: 9, names: both}\nsandbox: {mode: none, wall_seconds: 3}\n",
    )
    direct = [
        *search_tools(max_results=2, timeout=4),
        *math_tools(),
        *code_tools(sandbox="none", timeout=9, pool_size=0),
    ]
    assert [(t.name, t.timeout) for t in built] == [(t.name, t.timeout) for t in direct]
    assert [t.name for t in built] == [
        "brave_search",
        "web_search",
        "wolfram_alpha",
        "calculate",
        "code_interpreter",
        "run_python",
    ]
    default = search_tools()
    assert built[0].timeout != default[0].timeout


DEFAULT_NAMES = [
    ("llama3.1", ["brave_search", "code_interpreter", "wolfram_alpha"]),
    ("llama3.1:70b", ["brave_search", "code_interpreter", "wolfram_alpha"]),
    ("llama3.3", ["brave_search", "code_interpreter", "wolfram_alpha"]),
    # Llama 3.2's prompt guide documents the code interpreter, not brave_search or wolfram_alpha.
    ("llama3.2:3b", ["web_search", "code_interpreter", "calculate"]),
]


@pytest.mark.filterwarnings("ignore:tools.code:RuntimeWarning")
@pytest.mark.parametrize(("model", "expected"), DEFAULT_NAMES)
def test_builtins_offer_the_names_the_model_was_trained_on(
    tmp_path: Path, model: str, expected: list[str]
) -> None:
    built = tools_of(tmp_path, f"model: {model}\ntools: [search, code, math]\nsandbox: none\n")
    assert [t.name for t in built] == expected


@pytest.mark.filterwarnings("ignore:tools.code:RuntimeWarning")
def test_names_setting_overrides_the_model_default(tmp_path: Path) -> None:
    built = tools_of(
        tmp_path,
        "model: llama3.1\nsandbox: none\ntools:\n  - search: {names: custom}\n"
        "  - code: {names: both}\n  - math: {names: native}\n",
    )
    assert [t.name for t in built] == [
        "web_search",
        "code_interpreter",
        "run_python",
        "wolfram_alpha",
    ]


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:tools.code:RuntimeWarning")
async def test_the_model_override_picks_the_default_names(tmp_path: Path) -> None:
    path = write(tmp_path, {"config.yaml": "model: llama3.1\ntools: [search, math]\n"})
    async with load_agent(path, model="llama3.2") as agent:
        assert [t.name for t in agent.tools] == ["web_search", "calculate"]
    async with load_agent(path) as agent:
        assert [t.name for t in agent.tools] == ["brave_search", "wolfram_alpha"]


def test_custom_tools_import_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "agent_dir"
    monkeypatch.chdir(tmp_path)  # not the config's folder: the import must not depend on cwd
    built = tools_of(
        folder,
        """\
        model: x
        tools:
          - shop:lookup_order
          - import: shop:lookup_order
            name: find_order
            description: Look an order up.
            timeout: 2.5
            retries: 1
            max_output: 500
          - import: lib.helpers:SUITE
            retries: 5
        """,
        shop=GOOD_MODULE,
        lib____init__="",
        lib__helpers=GOOD_MODULE,
    )
    assert [t.name for t in built] == ["lookup_order", "find_order", "refund"]
    plain, renamed, from_list = built
    assert plain.function("A-1") == "order A-1: shipped"
    assert renamed.description == "Look an order up."
    assert (renamed.timeout, renamed.retries, renamed.max_output) == (2.5, 1, 500)
    assert (from_list.timeout, from_list.retries) == (7, 5)


def test_duplicate_tool_names_are_reported_with_both_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = problem(
        tmp_path,
        monkeypatch,
        "model: x\ntools:\n  - shop:refund\n  - shop:SUITE\n  - math\n  - math\n",
        shop=GOOD_MODULE,
    )
    assert message.splitlines() == [
        "config.yaml:4: tools[1]: a tool named 'refund' is already defined by tools[0]; "
        "give one of them another `name:`",
        "config.yaml:6: tools[3]: a tool named 'wolfram_alpha' is already defined by tools[2]; "
        "give one of them another `name:`",
    ]


IMPORT_FAILURES = [
    pytest.param(
        "nowhere:fn",
        {},
        "config.yaml:3: tools[0]: cannot import 'nowhere': no module named 'nowhere' in {dir} "
        "or on the Python path",
        id="no-module",
    ),
    pytest.param(
        "shop.sub:fn",
        {"shop": GOOD_MODULE},
        "config.yaml:3: tools[0]: cannot import 'shop.sub': no module named 'shop.sub' in {dir} "
        "or on the Python path",
        id="no-submodule",
    ),
    pytest.param(
        "needy:fn",
        {"needy": "import not_installed_anywhere_xyz\n"},
        "config.yaml:3: tools[0]: cannot import 'needy': it needs 'not_installed_anywhere_xyz', "
        "which is not installed (No module named 'not_installed_anywhere_xyz')",
        id="missing-dependency",
    ),
    pytest.param(
        "broken:fn",
        {"broken": "def fn(:\n    pass\n"},
        "config.yaml:3: tools[0]: cannot import 'broken': syntax error at broken.py:1: "
        "invalid syntax",
        id="syntax-error",
    ),
    pytest.param(
        "explodes:fn",
        {"explodes": "x = 1\nraise RuntimeError('no API key')\n"},
        "config.yaml:3: tools[0]: cannot import 'explodes': it raised RuntimeError: no API key "
        "at explodes.py:2",
        id="raises-on-import",
    ),
    pytest.param(
        "shop:lookup_ordr",
        {"shop": GOOD_MODULE},
        "config.yaml:3: tools[0]: 'shop' has no attribute 'lookup_ordr' "
        "(did you mean 'lookup_order'?)",
        id="misspelt-function",
    ),
    pytest.param(
        "shop:NOT_A_TOOL",
        {"shop": GOOD_MODULE},
        "config.yaml:3: tools[0]: 'shop:NOT_A_TOOL' is a int; it must be a function, a Tool, "
        "or a list of Tools",
        id="not-callable",
    ),
    pytest.param(
        "untyped:fn",
        {"untyped": "def fn(x):\n    '''Do it.'''\n"},
        "config.yaml:3: tools[0]: cannot make a tool of 'untyped:fn': ",
        id="not-a-valid-tool",
    ),
]


@pytest.mark.parametrize(("path", "modules", "expected"), IMPORT_FAILURES)
def test_import_failures_say_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    modules: dict[str, str],
    expected: str,
) -> None:
    message = problem(tmp_path, monkeypatch, f"model: x\ntools:\n  - {path}\n", **modules)
    expected = expected.format(dir=tmp_path)
    if expected.endswith(": "):
        assert message.startswith(expected)
        assert "'x'" in message  # the tool layer names the parameter at fault
    else:
        assert message == expected


def test_mapping_entries_point_at_the_import_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = problem(
        tmp_path,
        monkeypatch,
        "model: x\ntools:\n  - timeout: 3\n    import: nowhere:fn\n",
    )
    assert message.startswith("config.yaml:4: tools[0].import: cannot import 'nowhere'")


def test_renaming_a_ready_made_tool_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = problem(
        tmp_path,
        monkeypatch,
        "model: x\ntools:\n  - import: shop:refund\n    name: give_back\n",
        shop=GOOD_MODULE,
    )
    assert message == (
        "config.yaml:3: tools[0].import: 'shop:refund' is already a tool named 'refund'; rename "
        "it where it is defined, or import the plain function"
    )


def test_a_module_shadowed_by_an_installed_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json as installed

    message = problem(
        tmp_path, monkeypatch, "model: x\ntools:\n  - json:mine\n", json="def mine(): ...\n"
    )
    assert message == (
        f"config.yaml:3: tools[0]: 'json' is already imported from {installed.__file__}, so "
        f"{tmp_path / 'json.py'} is not used; rename your module"
    )
