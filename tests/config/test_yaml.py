"""YAML with line numbers, and `${VAR}` / `${VAR:-default}` from the environment."""

from __future__ import annotations

import re
import textwrap

import pytest

from agent.config import parse_config
from agent.config._load import expand_env, load_yaml
from agent.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${HOST}", {"HOST": "http://gpu:11434"}, "http://gpu:11434"),
        ("http://${H}:${P}/", {"H": "box", "P": "1"}, "http://box:1/"),
        ("${M:-llama3.1}", {}, "llama3.1"),
        ("${M:-llama3.1}", {"M": ""}, "llama3.1"),  # empty counts as unset, as in the shell
        ("${M:-llama3.1}", {"M": "llama3.3"}, "llama3.3"),
        ("${M:-}", {}, ""),
        ("${EMPTY}", {"EMPTY": ""}, ""),
        ("${D:-a:b-c}", {}, "a:b-c"),
        ("costs $5, $$x$$ stays", {}, "costs $5, $$x$$ stays"),
        ("$${NOT_EXPANDED}", {}, "${NOT_EXPANDED}"),
    ],
)
def test_expand_env(text: str, env: dict[str, str], expected: str) -> None:
    assert expand_env(text, env) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "${NOPE}",
            "environment variable 'NOPE' is not set; set it, or give a default with "
            "${NOPE:-default}",
        ),
        (
            "${1X}",
            "'${1X}' is not a variable reference; write ${NAME} or ${NAME:-default} "
            "(and $${ for a literal '${')",
        ),
        ("${OPEN", "'${' is not closed; write ${NAME} or ${NAME:-default}"),
    ],
)
def test_expand_env_problems(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_env(text, {})


def test_unquoted_values_are_typed_after_expansion() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            model: ${MODEL:-llama3.1}
            ollama:
              keep_alive: ${KEEP:-30m}
              options:
                seed: ${SEED:-42}
                temperature: ${TEMP}
            limits:
              run_timeout: ${TIMEOUT:-}
            system: "seed ${SEED:-42}"
            """
        ),
        env={"TEMP": "0.5"},
    )
    assert config.model == "llama3.1"
    assert config.ollama.keep_alive == "30m"
    assert config.ollama.options.seed == 42
    assert config.ollama.options.temperature == 0.5
    assert config.limits.run_timeout is None  # empty expands to null
    assert config.system == "seed 42"  # quoted stays a string


def test_quoted_expansion_stays_a_string_and_is_checked() -> None:
    text = 'model: x\nollama:\n  options:\n    seed: "${SEED}"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="c.yaml", env={"SEED": "7"})
    assert str(caught.value) == "c.yaml:4: ollama.options.seed: expected an integer, got '7'"


def test_unset_variables_are_all_reported_with_lines() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "model: ${MODEL}\nollama:\n  host: http://${OLLAMA_BOX}:11434\n",
            file="config.yaml",
            env={},
        )
    assert caught.value.problems == (
        "config.yaml:1: model: environment variable 'MODEL' is not set; set it, or give a "
        "default with ${MODEL:-default}",
        "config.yaml:3: ollama.host: environment variable 'OLLAMA_BOX' is not set; set it, or "
        "give a default with ${OLLAMA_BOX:-default}",
    )


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_AGENT_TEST_MODEL", "llama3.2:3b")
    assert parse_config("model: ${LLAMA_AGENT_TEST_MODEL}\n").model == "llama3.2:3b"


def test_keys_are_never_expanded_nor_typed() -> None:
    data, _ = load_yaml("${A}: 1\non: 2\n", env={"A": "x"})
    assert data == {"${A}": 1, "on": 2}


def test_lines_are_recorded_per_path() -> None:
    _, source = load_yaml(
        textwrap.dedent(
            """\
            model: x
            tools:
              - search
              - search:
                  max_results: 3
            system: |
              line one
              line two
            """
        ),
        file="c.yaml",
    )
    assert source.line(("model",)) == 1
    assert source.line(("tools",)) == 2
    assert source.line(("tools", 0)) == 3
    assert source.line(("tools", 1, "search", "max_results")) == 5
    assert source.line(("system",)) == 6
    assert source.line(("tools", 1, "search", "nope")) == 4  # nearest written ancestor
    assert source.where(("tools", 1, "search")) == "c.yaml:4: tools[1].search"


def test_anchors_and_merge_keys() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            model: x
            tools:
              - search: &fast
                  max_results: 2
                  timeout: 5
              - import: pkg.mod:fn
                timeout: 3
            ollama:
              options:
                <<: {temperature: 0.1, seed: 1}
                seed: 2
            """
        )
    )
    assert config.ollama.options.temperature == 0.1
    assert config.ollama.options.seed == 2  # written keys win over merged ones


def test_recursive_alias_is_an_error_not_a_hang() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml:2: tools\[0\]: an alias refers to itself"):
        parse_config("model: x\ntools: &t [*t]\n", file="c.yaml")
