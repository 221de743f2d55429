"""A real `llama-server` for tests and benchmarks: build it once, write a tiny model, run it.

* **Build** (`build`, `python -m agent.testing llama-server build`): the `llama-cpp-python`
  source distribution on PyPI vendors llama.cpp whole (`vendor/llama.cpp`, with `tools/server`
  and `models/ggml-vocab-llama-bpe.gguf`, the real Llama 3 vocabulary). It is fetched with
  `pip download --no-deps --no-binary :all:`, configured with CMake for the server alone
  (Release, static libraries, no curl, no OpenSSL, no tests or examples) and built with
  `cmake --build --target llama-server`. The binary and the vocabulary go to a cache outside
  the repository, `${LLAMA_AGENT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/llama-agent}/
  llama.cpp-<version>/`; an existing install is kept (a build takes 14-70 minutes on 2 cores).
  `LLAMA_SERVER=/path/to/llama-server` uses another binary (the vocabulary is then looked for
  beside it, then in the cache).
* **A tiny model** (`write_tiny_model`): the real Llama 3 vocabulary and merges, with the
  Llama 3.1 names of the special tokens (the vocabulary file is Llama 3.0's, where 128008 and
  128010 are still reserved) and 3.1's end tokens (eos = eot = 128009, eom = 128008), and two
  layers of seeded random weights, 64 wide. What it writes is random, except for a few tokens
  whose successor is fixed (`SUCCESSORS`), so that a greedy request shows the engine's treatment
  of the protocol deterministically: after `\\n\\n` (the end of every native prompt) it writes
  `Hello there<|eot_id|>`; after `<|reserved_special_token_10|>` it writes
  `<|python_tag|>brave_search.call(query="llama")<|eom_id|>`.
* **Running it** (`LlamaServer`): on 127.0.0.1, a free port, a small context, one slot; ready
  when `/health` answers 200; terminated (then killed) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.llama3 import SPECIAL_TOKENS

LLAMA_CPP_PYTHON = "0.3.36"
"""The `llama-cpp-python` sdist whose vendored llama.cpp the tests run (llama.cpp 0.5.0-dev)."""

VOCAB = "ggml-vocab-llama-bpe.gguf"
BUILD_COMMAND = "python -m agent.testing llama-server build"
"""The command that builds and caches `llama-server` (what a skipped test tells to run)."""

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary in the cache
    "-DGGML_NATIVE=OFF",  # portable: the cache may be restored on another CPU (CI)
    "-DLLAMA_CURL=OFF",  # no model downloads: the tests write their model
    "-DLLAMA_OPENSSL=OFF",  # 127.0.0.1 only
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # no web UI download at build time: the tests need none
)

BOS, EOM, EOT, PYTHON_TAG = 128000, 128008, 128009, 128010
TRIGGER_CALL = "<|reserved_special_token_10|>"
"""A special token the renderer never writes: after it the tiny model writes a tool call."""
TRIGGER_ID = BOS + SPECIAL_TOKENS.index(TRIGGER_CALL)

# Fixed successors (token id → next token id) the tiny model follows under greedy sampling.
# The ids are the exact Llama 3 tokens of the texts named in the module docstring (the real
# server's `/tokenize` checks them in tests/backends/test_llamacpp_real.py).
HELLO_TOKENS = (9906, 1070)  # "Hello", " there"
CALL_TOKENS = (1347, 525, 10947, 8692, 10974, 429, 657, 3105, 909)  # brave_search.call(...)
SUCCESSORS: dict[int, int] = {
    271: HELLO_TOKENS[0],  # "\n\n"
    HELLO_TOKENS[0]: HELLO_TOKENS[1],
    HELLO_TOKENS[1]: EOT,
    TRIGGER_ID: PYTHON_TAG,
    PYTHON_TAG: CALL_TOKENS[0],
    **dict(zip(CALL_TOKENS, (*CALL_TOKENS[1:], EOM), strict=True)),
}
HELLO_TEXT = "Hello there"
CALL_TEXT = 'brave_search.call(query="llama")'


# --- the cache ------------------------------------------------------------------------------------


def cache_dir(version: str = LLAMA_CPP_PYTHON) -> Path:
    """Where the build of `version` is kept (outside any repository)."""
    root = os.environ.get("LLAMA_AGENT_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "llama-agent")
    return Path(root).expanduser() / f"llama.cpp-{version}"


@dataclass(frozen=True, kw_only=True)
class Installed:
    """A `llama-server` binary and the Llama 3 vocabulary it came with."""

    server: Path
    vocab: Path


def find_installed(version: str = LLAMA_CPP_PYTHON) -> Installed | None:
    """`LLAMA_SERVER` (with a vocabulary beside it or in the cache), else the cached build."""
    cached = cache_dir(version)
    given = os.environ.get("LLAMA_SERVER")
    server = Path(given).expanduser() if given else cached / "llama-server"
    for vocab in (server.parent / VOCAB, cached / VOCAB):
        if server.is_file() and os.access(server, os.X_OK) and vocab.is_file():
            return Installed(server=server, vocab=vocab)
    return None


def missing_reason(version: str = LLAMA_CPP_PYTHON) -> str:
    """Why `find_installed` found nothing, and the command that fixes it."""
    given = os.environ.get("LLAMA_SERVER")
    where = f"LLAMA_SERVER={given}" if given else str(cache_dir(version) / "llama-server")
    return (
        f"no llama-server with the Llama 3 vocabulary ({VOCAB}) at {where}; build it (once, "
        f"14-70 minutes) with `{BUILD_COMMAND}`, or set LLAMA_SERVER to a llama-server binary"
    )


def build(
    version: str = LLAMA_CPP_PYTHON,
    *,
    jobs: int | None = None,
    source: Path | None = None,
    log: Callable[[str], None] = print,
) -> Installed:
    """Build `llama-server` from the `llama-cpp-python` sdist into `cache_dir(version)`.

    Nothing is done when it is there already. `source`: an unpacked sdist (or its
    `vendor/llama.cpp`) to use instead of downloading one; when it holds a finished build
    (`build/bin/llama-server`) that binary is installed as it is.
    """
    found = find_installed(version)
    target = cache_dir(version)
    if found is not None and found.server.parent == target:
        log(f"llama-server {version} is already built: {found.server}")
        return found
    with tempfile.TemporaryDirectory(prefix="llama-agent-build-") as scratch:
        tree = _llama_cpp_tree(source) if source else _download(version, Path(scratch), log)
        built = tree / "build" / "bin" / "llama-server"
        if not (source and built.is_file()):
            if shutil.which("cmake") is None:
                raise FileNotFoundError(
                    "cmake is not on PATH: install it and a C++ compiler (`apt-get install cmake "
                    "g++`, or `pip install cmake`), then run this again"
                )
            build_dir = Path(scratch) / "build"
            built = build_dir / "bin" / "llama-server"
            _run(["cmake", "-S", str(tree), "-B", str(build_dir), *CMAKE_OPTIONS], log)
            cores = str(jobs or os.cpu_count() or 1)
            _run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", cores], log)
        # Installed under a temporary name, then renamed: a build cut short leaves no binary.
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / "models" / VOCAB, target / VOCAB)
        partial = target / "llama-server.partial"
        shutil.copyfile(built, partial)
        partial.chmod(0o755)
        partial.replace(target / "llama-server")
    log(f"installed llama-server {version} in {target}")
    return Installed(server=target / "llama-server", vocab=target / VOCAB)


def _llama_cpp_tree(source: Path) -> Path:
    for tree in (source / "vendor" / "llama.cpp", source):
        if (tree / "tools" / "server").is_dir():
            return tree
    raise FileNotFoundError(
        f"{source} holds no llama.cpp source (tools/server); give the unpacked "
        "llama-cpp-python sdist or its vendor/llama.cpp"
    )


def _download(version: str, scratch: Path, log: Callable[[str], None]) -> Path:
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    _run([*pip, "-d", str(scratch), f"llama-cpp-python=={version}"], log)
    archive = next(scratch.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    return _llama_cpp_tree(scratch / archive.name.removesuffix(".tar.gz"))


def _run(command: Sequence[str], log: Callable[[str], None]) -> None:
    log("$ " + " ".join(command))
    subprocess.run(command, check=True)


# --- the tiny model -------------------------------------------------------------------------------


def write_tiny_model(
    path: Path,
    vocab: Path,
    *,
    seed: int = 0,
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    context_length: int = 131072,
) -> Path:
    """Write a Llama 3.1-shaped GGUF model at `path` (about 40 MB) and return `path`.

    Needs the `gguf` package (in the `dev` extra). The tokenizer is copied from `vocab`
    (`tokenizer.ggml.*`), with 3.1's special-token names and end tokens; the weights are drawn
    from `numpy.random.default_rng(seed)`, except that the last 16 dimensions of the residual
    stream carry `SUCCESSORS` (the layers never write there, so the fixed successors hold).
    """
    import gguf
    import numpy as np

    fields = read_gguf_metadata(vocab)
    tokens: list[bytes] = list(fields["tokenizer.ggml.tokens"])
    first = len(tokens) - len(SPECIAL_TOKENS)
    tokens[first:] = [name.encode() for name in SPECIAL_TOKENS]
    n_vocab = len(tokens)

    rng = np.random.default_rng(seed)
    head_dim = width // heads
    free = width - 16  # dimensions 0..free-1 are random; the rest carry the successors
    if len(SUCCESSORS) > width - free:
        raise ValueError("more fixed successors than reserved dimensions")

    def noise(*shape: int, scale: float = 0.02) -> Any:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embedding = np.zeros((n_vocab, width), np.float32)
    embedding[:, :free] = noise(n_vocab, free)
    output = np.zeros((n_vocab, width), np.float32)
    output[:, :free] = noise(n_vocab, free, scale=0.5)
    for k, (token, successor) in enumerate(SUCCESSORS.items()):
        embedding[token] = 0.0
        embedding[token, free + k] = 1.0
        output[successor, free + k] = 4.0

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llama-agent tiny Llama 3.1")
    writer.add_context_length(context_length)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(2 * width)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in fields["tokenizer.ggml.token_type"]])
    writer.add_token_merges(fields["tokenizer.ggml.merges"])
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOT)  # as Meta's 3.1 instruct models
    writer.add_eot_token_id(EOT)
    writer.add_eom_token_id(EOM)
    writer.add_add_bos_token(value=True)

    writer.add_tensor("token_embd.weight", embedding.astype(np.float16))
    writer.add_tensor("output_norm.weight", np.ones(width, np.float32))
    writer.add_tensor("output.weight", output.astype(np.float16))
    for i in range(layers):

        def into_free(matrix: Any) -> Any:
            matrix[free:, :] = 0.0  # nothing written into the successors' dimensions
            return matrix

        block = f"blk.{i}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(width, np.float32))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(width, np.float32))
        for name in ("attn_q", "attn_k", "attn_v"):
            writer.add_tensor(f"{block}.{name}.weight", noise(width, width))
        writer.add_tensor(f"{block}.attn_output.weight", into_free(noise(width, width)))
        writer.add_tensor(f"{block}.ffn_gate.weight", noise(2 * width, width))
        writer.add_tensor(f"{block}.ffn_up.weight", noise(2 * width, width))
        writer.add_tensor(f"{block}.ffn_down.weight", into_free(noise(width, 2 * width)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS.update({11: "<q", 12: "<d"})
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The key-value metadata of a GGUF file (v2/v3): strings as bytes, arrays as lists.

    `gguf.GGUFReader` makes a numpy view per array item: it took 67 s for the 400,000 strings
    of the vocabulary file on the shared 2-core machine, this reader about a second.
    """
    data = path.read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    (version,) = struct.unpack_from("<I", data, 4)
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version} is not supported (2 or 3 is)")
    _, count = struct.unpack_from("<QQ", data, 8)
    offset = 24

    def string() -> bytes:
        nonlocal offset
        (size,) = struct.unpack_from("<Q", data, offset)
        offset += 8 + size
        return data[offset - size : offset]

    def value(kind: int) -> Any:
        nonlocal offset
        if kind == _STRING:
            return string()
        if kind == _ARRAY:
            item, size = struct.unpack_from("<IQ", data, offset)
            offset += 12
            if item in _SCALARS:
                layout = struct.Struct(f"<{size}{_SCALARS[item][1]}")
                items = list(layout.unpack_from(data, offset))
                offset += layout.size
                return items
            return [value(item) for _ in range(size)]
        layout = struct.Struct(_SCALARS[kind])
        (single,) = layout.unpack_from(data, offset)
        offset += layout.size
        return single

    fields: dict[str, Any] = {}
    for _ in range(count):
        key = string().decode()
        (kind,) = struct.unpack_from("<I", data, offset)
        offset += 4
        fields[key] = value(kind)
    return fields


# --- running it -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """`llama-server` on 127.0.0.1 serving `model`, for as long as the `with` block runs.

    `context`: `-c` (one slot: `-np 1`, so the whole context is the slot's); `alias`: the
    model name it answers to; `args`: more command-line arguments. The server's log goes to
    `log_path` (a temporary file by default); it is quoted in the error when the server does
    not start within `ready_timeout` seconds.
    """

    def __init__(
        self,
        server: Path,
        model: Path,
        *,
        context: int = 2048,
        alias: str = "llama3.1",
        args: Sequence[str] = (),
        log_path: Path | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.alias = alias
        self.context = context
        self.command = [
            str(server),
            *("-m", str(model), "--host", "127.0.0.1", "--port", str(self.port)),
            *("-c", str(context), "-np", "1", "-t", "2", "--alias", alias, "--no-warmup"),
            *args,
        ]
        self.log_path = log_path or model.with_suffix(f".{self.port}.log")
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._process is not None
        until = time.monotonic() + self.ready_timeout
        while time.monotonic() < until:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {self._process.returncode} before it was "
                    f"ready:\n{self.log()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(
            f"llama-server was not ready within {self.ready_timeout} s:\n{self.log()}"
        )

    def log(self, tail: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_tiny_server(
    directory: Path, installed: Installed, *, context: int = 2048, args: Sequence[str] = ()
) -> Iterator[LlamaServer]:
    """Write the tiny model in `directory` and run `llama-server` on it (tests, benchmarks)."""
    model = write_tiny_model(directory / "tiny-llama-3.1.gguf", installed.vocab)
    with LlamaServer(installed.server, model, context=context, args=args) as server:
        yield server


# --- the command ----------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """`python -m agent.testing llama-server build|path`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.testing llama-server")
    commands = parser.add_subparsers(dest="action", required=True)
    make = commands.add_parser("build", help="build llama-server into the cache (if missing)")
    make.add_argument("--version", default=LLAMA_CPP_PYTHON, help="llama-cpp-python sdist")
    make.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: all cores)")
    make.add_argument("--source", type=Path, default=None, help="an unpacked sdist to use")
    make.add_argument(
        "--optional",
        action="store_true",
        help="a build this machine cannot do (no cmake or compiler, no PyPI) is a warning and "
        "exit 0, so the test command goes on and the real-server tests skip; not under CI=true",
    )
    where = commands.add_parser("path", help="print the llama-server the tests would use")
    where.add_argument("--version", default=LLAMA_CPP_PYTHON)
    args = parser.parse_args(argv)
    if args.action == "path":
        found = find_installed(args.version)
        if found is None:
            print(f"error: {missing_reason(args.version)}", file=sys.stderr)
            return 1
        print(found.server)
        return 0
    try:
        build(args.version, jobs=args.jobs, source=args.source)
    except (OSError, subprocess.CalledProcessError) as exc:
        if args.optional and os.environ.get("CI") != "true":
            print(
                f"warning: llama-server was not built ({exc}); the tests against a real "
                f"llama-server will skip. `{BUILD_COMMAND}` builds it.",
                file=sys.stderr,
            )
            return 0
        print(f"error: building llama-server failed: {exc}", file=sys.stderr)
        return 1
    return 0
