"""`engine:` and `server:`: which model server a config talks to, on which hosts, with which key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

import agent.backends
from agent import load_agent
from agent.backends import ENGINES, Engine, OllamaBackend, PoolBackend
from agent.config import build_backend, load_config, server_hosts, with_hosts
from agent.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


class RecordingBackend(OllamaBackend):
    """An engine's backend as `connect` makes it: records what it was given."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, host: str | None = None, **kwargs: Any) -> None:
        RecordingBackend.made.append({"host": host, **kwargs})
        super().__init__(host or "127.0.0.1:8000")


@pytest.fixture
def vllm_engine(monkeypatch: pytest.MonkeyPatch) -> type[RecordingBackend]:
    """`engine: vllm` resolves to `RecordingBackend` (found by name in `agent.backends`)."""
    RecordingBackend.made = []
    monkeypatch.setitem(
        ENGINES, "vllm", Engine(name="vllm", backend="RecordingBackend", health="/health",
                                api_key_env="VLLM_API_KEY"),
    )  # fmt: skip
    monkeypatch.setattr(agent.backends, "RecordingBackend", RecordingBackend, raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    return RecordingBackend


def test_the_default_is_ollama_on_ollama_host(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model: llama3.1\nollama: {host: 'gpu:11434'}\n"))
    assert config.engine == "ollama"
    assert server_hosts(config) == ["gpu:11434"]
    built = load_agent(write(tmp_path, "model: llama3.1\nollama: {host: 'gpu:11434'}\n"))
    assert isinstance(built.backend, OllamaBackend)
    assert built.backend.url == "http://gpu:11434"


def test_several_hosts_make_a_pool_closed_with_the_agent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        model: llama3.1
        server:
          hosts: [http://gpu1:11434, http://gpu2:11434]
          concurrency: 8
        """,
    )
    built = load_agent(path)
    pool = built.backend
    assert isinstance(pool, PoolBackend)
    assert [h.url for h in pool.hosts] == ["http://gpu1:11434", "http://gpu2:11434"]
    assert pool.concurrency == 8
    assert pool in built.resources
    anyio.run(built.aclose)


def test_one_host_may_be_written_without_a_list(tmp_path: Path) -> None:
    built = load_agent(write(tmp_path, "model: llama3.1\nserver: {hosts: 'gpu1:11434'}\n"))
    assert isinstance(built.backend, OllamaBackend)
    assert built.backend.url == "http://gpu1:11434"


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "server: {hosts: [a:1, a:1]}\n",
            "server.hosts: a host is listed twice",
        ),
        (
            "server: {hosts: ['a:99999']}\n",
            "server.hosts[0]: invalid Ollama host 'a:99999'",
        ),
        (
            "server: {api_key_env: 'not a name'}\n",
            "server.api_key_env",
        ),
        (
            "engine: tgi\n",
            "engine",
        ),
    ],
)
def test_bad_server_settings_are_config_errors(tmp_path: Path, yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "model: llama3.1\n" + yaml))
    assert message in str(caught.value)


def test_ollama_host_and_server_hosts_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "model: llama3.1\nollama: {host: 'a:1'}\nserver: {hosts: ['b:1']}\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: ollama.host: .*not both"):
        load_agent(path)


def test_ollama_host_is_not_taken_for_another_engine(
    tmp_path: Path, vllm_engine: type[RecordingBackend]
) -> None:
    path = write(tmp_path, "model: llama3.1\nengine: vllm\nollama: {host: 'a:1'}\n")
    with pytest.raises(ConfigError, match=r"ollama.host is Ollama's, but the engine is vllm"):
        load_agent(path)


def test_the_engine_backend_gets_the_hosts_and_the_key_from_the_named_variable(
    tmp_path: Path, vllm_engine: type[RecordingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_VLLM_KEY", "s3cret")
    path = write(
        tmp_path,
        """\
        model: meta-llama/Llama-3.1-8B-Instruct
        engine: vllm
        server: {hosts: ['http://gpu1:8000'], api_key_env: MY_VLLM_KEY}
        """,
    )
    built = load_agent(path)
    assert isinstance(built.backend, vllm_engine)
    assert vllm_engine.made == [
        {"host": "http://gpu1:8000", "concurrency": None, "api_key": "s3cret"}
    ]
    assert "s3cret" not in path.read_text()


def test_the_engine_default_variable_is_read_when_none_is_named(
    tmp_path: Path, vllm_engine: type[RecordingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "model: llama3.1\nengine: vllm\n")
    load_agent(path)
    assert vllm_engine.made[-1] == {"host": None, "concurrency": None}  # unset: no key
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    load_agent(path)
    assert vllm_engine.made[-1]["api_key"] == "from-env"


def test_a_named_variable_that_is_unset_says_what_to_export(
    tmp_path: Path, vllm_engine: type[RecordingBackend]
) -> None:
    path = write(tmp_path, "model: llama3.1\nengine: vllm\nserver: {api_key_env: NOPE_KEY}\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: server.api_key_env: .*export NOPE_KEY="):
        load_agent(path)


def test_ollama_takes_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "x")
    path = write(tmp_path, "model: llama3.1\nserver: {api_key_env: K}\n")
    with pytest.raises(ConfigError, match="Ollama takes no API key"):
        load_agent(path)


def test_an_engine_missing_from_this_install_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        ENGINES, "sglang", Engine(name="sglang", backend="NoSuchBackend", health="/health",
                                  api_key_env=None),
    )  # fmt: skip
    path = write(tmp_path, "model: llama3.1\nengine: sglang\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: engine: the sglang engine is not avail"):
        build_backend(load_config(path))


def test_the_command_line_replaces_the_hosts_and_the_engine(
    tmp_path: Path, vllm_engine: type[RecordingBackend]
) -> None:
    config = load_config(write(tmp_path, "model: llama3.1\nollama: {host: 'a:1'}\n"))
    assert server_hosts(with_hosts(config, ["b:1", "c:1"])) == ["b:1", "c:1"]
    # Another engine on the command line: the config's Ollama host is not its host.
    switched = with_hosts(config, engine="vllm")
    assert switched.engine == "vllm"
    assert server_hosts(switched) == [None]
    assert switched.source == config.source  # errors still point at the file's lines


def test_load_agent_host_replaces_a_pool(tmp_path: Path) -> None:
    path = write(tmp_path, "model: llama3.1\nserver: {hosts: ['a:1', 'b:1']}\n")
    built = load_agent(path, host="c:1")
    assert isinstance(built.backend, OllamaBackend)
    assert built.backend.url == "http://c:1"
