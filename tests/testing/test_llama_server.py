"""The real llama-server harness: the cache, finding a binary, the command, reading GGUF."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.testing._llama_server import (
    BUILD_COMMAND,
    LLAMA_CPP_PYTHON,
    VOCAB,
    build,
    cache_dir,
    find_installed,
    missing_reason,
    read_gguf_metadata,
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLAMA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LLAMA_SERVER", raising=False)
    return tmp_path / "cache"


def fake_sdist(root: Path) -> Path:
    """An unpacked sdist holding a finished build (what `--source` reuses)."""
    tree = root / "llama_cpp_python-x" / "vendor" / "llama.cpp"
    (tree / "tools" / "server").mkdir(parents=True)
    (tree / "models").mkdir()
    (tree / "models" / VOCAB).write_bytes(b"vocab")
    binary = tree / "build" / "bin" / "llama-server"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    return root / "llama_cpp_python-x"


def test_the_cache_is_outside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA_AGENT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert cache_dir("1.2.3") == Path("/somewhere/cache/llama-agent/llama.cpp-1.2.3")
    monkeypatch.setenv("LLAMA_AGENT_CACHE", "/elsewhere")
    assert cache_dir() == Path(f"/elsewhere/llama.cpp-{LLAMA_CPP_PYTHON}")


def test_missing_says_how_to_build(cache: Path) -> None:
    assert find_installed() is None
    assert BUILD_COMMAND in missing_reason()
    assert str(cache) in missing_reason()


def test_build_from_a_finished_source_tree_installs_once(cache: Path, tmp_path: Path) -> None:
    source = fake_sdist(tmp_path / "src")
    logged: list[str] = []
    installed = build(source=source, log=logged.append)
    assert installed.server == cache_dir() / "llama-server"
    assert installed.vocab.read_bytes() == b"vocab"
    assert installed.server.stat().st_mode & 0o111
    assert find_installed() == installed
    assert not list(cache_dir().glob("*.partial"))
    again = build(source=source, log=logged.append)  # there already: nothing is done
    assert again == installed
    assert "already built" in logged[-1]


def test_llama_server_env_names_another_binary(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "bin" / "llama-server"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("LLAMA_SERVER", str(binary))
    assert find_installed() is None  # no vocabulary beside it or in the cache
    assert f"LLAMA_SERVER={binary}" in missing_reason()
    (binary.parent / VOCAB).write_bytes(b"v")
    found = find_installed()
    assert found is not None
    assert (found.server, found.vocab) == (binary, binary.parent / VOCAB)


def test_the_command(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "agent.testing", "llama-server", *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    missing = run("path")
    assert missing.returncode == 1
    assert BUILD_COMMAND in missing.stderr
    (tmp_path / "empty").mkdir()
    broken = run("build", "--source", str(tmp_path / "empty"))
    assert broken.returncode == 1
    assert "holds no llama.cpp source" in broken.stderr
    # --optional (the README's test command): a build this machine cannot do lets the tests go
    # on (the real-server ones skip), except under CI, where they must run.
    monkeypatch.setenv("CI", "false")
    optional = run("build", "--optional", "--source", str(tmp_path / "empty"))
    assert optional.returncode == 0
    assert "tests against a real llama-server will skip" in optional.stderr
    monkeypatch.setenv("CI", "true")
    assert run("build", "--optional", "--source", str(tmp_path / "empty")).returncode == 1
    built = run("build", "--source", str(fake_sdist(tmp_path / "src")))
    assert built.returncode == 0, built.stderr
    assert run("path").stdout.strip() == str(cache_dir() / "llama-server")


def test_gguf_metadata_is_read_as_gguf_writes_it(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_token_list(["a", "<|x|>"])
    writer.add_token_types([1, 3])
    writer.add_rope_freq_base(0.5)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    fields = read_gguf_metadata(path)
    assert fields["general.architecture"] == b"llama"
    assert fields["llama.block_count"] == 2
    assert fields["tokenizer.ggml.tokens"] == [b"a", b"<|x|>"]
    assert fields["tokenizer.ggml.token_type"] == [1, 3]
    assert fields["llama.rope.freq_base"] == 0.5
    (tmp_path / "not.gguf").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_gguf_metadata(tmp_path / "not.gguf")
