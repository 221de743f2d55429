"""Every config mistake gives `file:line: key: what is wrong`, with what is allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from agent.config import load_config, parse_config
from agent.errors import ConfigError


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), file="config.yaml", env={})
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert caught.value.path == "config.yaml"
    return caught.value.problems


CASES = [
    pytest.param(
        """\
        model: llama3.1
        system: hi
        tools:
          - search
          - code
          - serch
        """,
        ["config.yaml:6: tools[2]: unknown built-in 'serch' (did you mean 'search'?)"],
        id="misspelt-builtin",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools: [wikipedia]
        """,
        [
            "config.yaml:2: tools[0]: unknown built-in 'wikipedia'; the built-ins are code, "
            "math, search, and a tool of your own is written package.module:function"
        ],
        id="unknown-builtin-lists-allowed",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools:
          - serch:
              max_results: 3
        """,
        ["config.yaml:3: tools[0]: unknown tool key 'serch' (did you mean 'search'?)"],
        id="misspelt-builtin-mapping",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools:
          - search:
              max_results: ten
              regon: us-en
        """,
        [
            "config.yaml:4: tools[0].search.max_results: expected an integer, got 'ten'",
            "config.yaml:5: tools[0].search.regon: unknown key 'regon' (did you mean 'region'?)",
        ],
        id="builtin-settings",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools:
          - import: my_tools:lookup
            timout: 5
            retries: -1
          - "my tools:lookup"
          - 42
        """,
        [
            "config.yaml:4: tools[0].timout: unknown key 'timout' (did you mean 'timeout'?)",
            "config.yaml:5: tools[0].retries: must be at least 0, got -1",
            "config.yaml:6: tools[1]: 'my tools:lookup' is not an import path; "
            "write package.module:function",
            "config.yaml:7: tools[2]: a tool is a built-in name (code, math, search), an import "
            "path package.module:function, a built-in name as a key with its settings under it, "
            "a mapping with `import:`, or `mcp:` with an MCP server's command or url",
        ],
        id="custom-tools",
    ),
    pytest.param(
        """\
        model: llama3.1
        ollama:
          host: http://localhost:11434
          keep_alive: 30 minutes
          options:
            temprature: 0.2
            top_p: 2
            num_ctx: 0
            stop: "</s>"
        """,
        [
            "config.yaml:4: ollama.keep_alive: '30 minutes' is not a duration; write seconds "
            "(300), or a duration such as 30s, 5m, 1h30m (negative keeps the model loaded)",
            "config.yaml:6: ollama.options.temprature: unknown key 'temprature' "
            "(did you mean 'temperature'?)",
            "config.yaml:7: ollama.options.top_p: must be at most 1, got 2",
            "config.yaml:8: ollama.options.num_ctx: must be greater than 0, got 0",
            "config.yaml:9: ollama.options.stop: expected a list, got '</s>'",
        ],
        id="ollama",
    ),
    pytest.param(
        """\
        model: llama3.1
        limits:
          max_steps: 0
          run_timeout: soon
          max_tokens: true
          verbose: 3
        """,
        [
            "config.yaml:3: limits.max_steps: must be at least 1, got 0",
            "config.yaml:4: limits.run_timeout: expected a number, got 'soon'",
            "config.yaml:5: limits.max_tokens: expected an integer, got true",
            "config.yaml:6: limits.verbose: unknown key 'verbose'; allowed: max_steps, "
            "max_retries, max_repeats, run_timeout, max_tokens",
        ],
        id="limits",
    ),
    pytest.param(
        """\
        model: llama3.1
        sandbox: bwarp
        tool_format: jsn
        """,
        [
            "config.yaml:2: sandbox: 'bwarp' is not allowed (did you mean 'bwrap'?)",
            "config.yaml:3: tool_format: 'jsn' is not allowed (did you mean 'json'?)",
        ],
        id="literals",
    ),
    pytest.param(
        """\
        model: llama3.1
        sandbox:
          mode: none
          memory_bytes: 5 parsecs
          cpu_seconds: 0
        """,
        [
            "config.yaml:4: sandbox.memory_bytes: '5 parsecs' is not a size; write bytes "
            "(1048576) or a size such as 64KiB, 512MiB, 1GiB",
            "config.yaml:5: sandbox.cpu_seconds: must be greater than 0, got 0",
        ],
        id="sandbox",
    ),
    pytest.param(
        """\
        system: hello
        modle: llama3.1
        """,
        [
            "config.yaml:1: missing required key 'model'",
            "config.yaml:2: modle: unknown key 'modle' (did you mean 'model'?)",
        ],
        id="missing-and-misspelt-model",
    ),
    pytest.param(
        """\
        model: ""
        tools: search
        limits: 10
        """,
        [
            "config.yaml:1: model: must not be empty",
            "config.yaml:2: tools: expected a list, got 'search'",
            "config.yaml:3: limits: expected a mapping, got 10",
        ],
        id="wrong-shapes",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools: [search]
        model: llama3.2
        """,
        ["config.yaml:3: model: duplicate key 'model' (first at line 1)"],
        id="duplicate-key",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools:
          - search
          code
        """,
        [
            "config.yaml:4: invalid YAML: could not find expected ':' while scanning a simple "
            "key, in 'code'"
        ],
        id="yaml-syntax",
    ),
    pytest.param(
        """\
        model: llama3.1
        system: "unclosed
        """,
        [
            "config.yaml:2: invalid YAML: found unexpected end of stream while scanning a quoted "
            "scalar, in 'system: \"unclosed'"
        ],
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        """\
        model: llama3.1
        tools: [search
        """,
        [
            "config.yaml:3: invalid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence at line 2)"
        ],
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        "", ["config.yaml:1: the config is empty; it needs at least `model:`"], id="empty"
    ),
    pytest.param(
        "- model: llama3.1\n",
        ["config.yaml:1: a config is a mapping of keys (model:, tools:, ...), got a list"],
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_problem_messages(text: str, expected: list[str]) -> None:
    assert list(problems(text)) == expected


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    found = problems(
        """\
        model: llama3.1
        tools: [serch]
        limits: {max_steps: 0}
        ollama: {options: {seed: x}}
        """
    )
    assert [p.split(":")[1] for p in found] == ["2", "3", "4"]


def test_load_config_names_the_file_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "bot.yaml").write_text("model: llama3.1\ntools: [maths]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("agents/bot.yaml")
    assert str(caught.value) == (
        "agents/bot.yaml:2: tools[0]: unknown built-in 'maths' (did you mean 'math'?)"
    )


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: None, "missing.yaml: no such file"),
        (lambda p: p.mkdir(), "missing.yaml: is a directory, not a YAML file"),
        (
            lambda p: p.write_bytes(b"model: \xff\n"),
            "missing.yaml: not UTF-8 text (invalid start byte)",
        ),
    ],
    ids=["absent", "directory", "binary"],
)
def test_unreadable_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: object, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    setup(tmp_path / "missing.yaml")  # type: ignore[operator]
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config("missing.yaml")
