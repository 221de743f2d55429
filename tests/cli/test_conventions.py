"""What a new user expects of the command, in real processes against the emulator (issue 12):
hosts checked where they enter, the default agent, piped input, the usual flags, `--json` on
every failure, NO_COLOR, unknown tools with their arguments, and `check`'s context line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import ExitCode
from agent.testing import EmulatedModel, answer, call_tool
from tests.cli.conftest import StartEmulator

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("llama-agent")
REPO = Path(__file__).resolve().parents[2]


def llama_agent(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "NO_COLOR")}
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
    )


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not SCRIPT.exists():
        pytest.skip("the llama-agent script is not installed in this environment")


# --- hosts ------------------------------------------------------------------------------------

BAD_HOSTS = [
    ("http://127.0.0.1:notaport", "port"),
    (":99999", "port"),
    ("12011", ":12011"),
    ("htp://127.0.0.1:11434", "scheme"),
    ("ftp://127.0.0.1", "scheme"),
    ("http://127.0.0.1:11434/api", "/api"),
]


@pytest.mark.parametrize(("host", "why"), BAD_HOSTS)
def test_a_bad_ollama_host_is_one_usage_line(config: Path, host: str, why: str) -> None:
    done = llama_agent("run", str(config), "hi", env={"OLLAMA_HOST": host})
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: OLLAMA_HOST: invalid Ollama host {host!r}")
    assert why in done.stderr
    assert "host:port" in done.stderr  # the accepted forms


def test_a_bad_host_flag_and_check(config: Path) -> None:
    flag = llama_agent("run", str(config), "hi", "--host", ":99999")
    assert flag.returncode == ExitCode.USAGE
    assert flag.stderr.startswith("error: --host: invalid Ollama host ':99999'")
    checked = llama_agent("check", str(config), env={"OLLAMA_HOST": "12011"})
    assert checked.returncode == ExitCode.USAGE
    assert "Traceback" not in checked.stderr
    as_json = llama_agent("run", str(config), "hi", "--json", "--host", "ftp://x")
    assert as_json.returncode == ExitCode.USAGE
    failure = json.loads(as_json.stdout)
    assert (failure["exit_code"], failure["type"]) == (ExitCode.USAGE, "usage")
    assert "ftp://x" in failure["error"]


def test_a_bad_host_in_yaml_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: llama3.1\nollama:\n  host: http://127.0.0.1:notaport\n")
    done = llama_agent("run", str(path), "hi")
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr.startswith(f"{path}:3: ollama.host: invalid Ollama host")
    assert "Traceback" not in done.stderr


def test_accepted_host_forms_reach_the_server(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Hi."))
    port = emu.url.rsplit(":", 1)[1]
    for host in (f":{port}", f"127.0.0.1:{port}", f"{emu.url}/", f"http://localhost:{port}"):
        done = llama_agent("run", str(config), "hi", env={"OLLAMA_HOST": host})
        assert (done.returncode, done.stdout) == (0, "Hi.\n"), (host, done.stderr)


# --- the default agent, arguments, piped input, flags -----------------------------------------


def test_the_packaged_default_config_is_the_repositorys() -> None:
    packaged = REPO / "agent" / "cli" / "default_config.yaml"
    assert packaged.read_bytes() == (REPO / "config.yaml").read_bytes()


def test_run_without_a_config_uses_the_default_agent(emulator: StartEmulator) -> None:
    shown = llama_agent("prompt", "hello")
    assert shown.returncode == 0, shown.stderr
    assert "brave_search" in shown.stdout  # the default agent's search tool
    emu = emulator(answer("Hello."))
    done = llama_agent("run", "hello", env={"OLLAMA_HOST": emu.url})
    assert (done.returncode, done.stdout) == (0, "Hello.\n"), done.stderr


def test_a_lone_yaml_argument_is_the_config(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Done."))
    piped = llama_agent("run", str(config), env={"OLLAMA_HOST": emu.url}, stdin="the task\n")
    assert piped.returncode == 0, piped.stderr
    assert "the task" in emu.requests[-1].prompt
    missing = llama_agent("run", str(config))
    assert missing.returncode == ExitCode.USAGE
    assert "missing TASK" in missing.stderr
    typo = llama_agent("run", "nosuch.yaml", "hi")
    assert typo.returncode == ExitCode.CONFIG


def test_piped_text_joins_the_task(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("A summary."))
    done = llama_agent(
        "run", str(config), "summarise this", env={"OLLAMA_HOST": emu.url}, stdin="notes: 42\n"
    )
    assert done.returncode == 0, done.stderr
    prompt = emu.requests[-1].prompt or ""
    assert "summarise this\n\nnotes: 42" in prompt


def test_system_max_steps_and_version_flags(config: Path, emulator: StartEmulator) -> None:
    shown = llama_agent("prompt", str(config), "hi", "-s", "You speak French.")
    assert "You speak French." in shown.stdout
    assert "You are terse." not in shown.stdout
    emu = emulator(call_tool("calculate", {"expression": "1+1"}, then="2."))
    limited = llama_agent("run", str(config), "1+1?", "--max-steps", "1", "--host", emu.url)
    assert limited.returncode == ExitCode.LIMIT, limited.stderr
    version = llama_agent("-V")
    assert version.returncode == 0
    assert version.stdout.startswith("llama-agent ")


def test_help_shows_no_bool_metavar() -> None:
    for command in ((), ("run",), ("chat",), ("check",)):
        shown = llama_agent(*command, "--help", env={"COLUMNS": "120"})
        assert "<bool>" not in shown.stdout
        assert "--json" in shown.stdout or command != ("run",)


# --- --json failures, NO_COLOR, unknown tools ----------------------------------------------------


def test_json_failures_are_json_objects(tmp_path: Path, config: Path, dead_url: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llama3.1\ntools: [serch]\n")
    cases = [
        (("run", str(bad), "hi", "--json"), ExitCode.CONFIG, "config"),
        (("run", str(config), "hi", "--json", "--host", dead_url), 4, "ollama_unreachable"),
        (("run", "--json"), ExitCode.USAGE, "usage"),
        (("run", str(config), "hi", "--json", "--nosuch"), ExitCode.USAGE, "usage"),
        (("tools", str(bad), "--json"), ExitCode.CONFIG, "config"),
    ]
    for args, code, kind in cases:
        done = llama_agent(*args)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        failure = json.loads(done.stdout)
        assert failure["status"] == "error"
        assert (failure["exit_code"], failure["type"]) == (code, kind), args
        assert failure["error"]


def test_json_result_carries_its_exit_code(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Hi."))
    done = llama_agent("run", str(config), "hi", "--json", "--host", emu.url)
    result = json.loads(done.stdout)
    assert (result["exit_code"], result["type"], result["answer"]) == (0, "ok", "Hi.")


def test_no_color_means_no_escape_sequence(config: Path, emulator: StartEmulator) -> None:
    script = call_tool("calculate", {"expression": "3*7"}, then="21.")
    forced = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    emu = emulator(script)
    coloured = llama_agent("run", str(config), "3*7?", env={**forced, "OLLAMA_HOST": emu.url})
    assert "\x1b[" in coloured.stderr  # the terminal really is forced
    emu = emulator(script)
    plain = llama_agent(
        "run", str(config), "3*7?", env={**forced, "NO_COLOR": "1", "OLLAMA_HOST": emu.url}
    )
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stdout + plain.stderr
    assert "calculate" in plain.stderr


def test_an_unknown_tool_is_shown_with_its_arguments(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(call_tool("weather", {"city": "Lyon", "days": 2}, then="No weather tool."))
    done = llama_agent("run", str(config), "weather?", env={"OLLAMA_HOST": emu.url})
    assert done.returncode == 0, done.stderr
    assert 'weather(city="Lyon", days=2)' in done.stderr
    assert "unknown tool 'weather'" in done.stderr


# --- context -------------------------------------------------------------------------------------


def test_check_fails_when_num_ctx_is_over_the_models_context(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: llama3.1\ntools: [math]\nollama:\n  options:\n    num_ctx: 16384\n")
    emu = emulator(answer("x"), models=[EmulatedModel.llama("llama3.1", context_length=8192)])
    done = llama_agent("check", str(path), "--host", emu.url)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "num_ctx 16384" in done.stderr
    assert "8192" in done.stderr


def test_an_overflow_tells_the_conversation_from_the_answers_reserve(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    path = tmp_path / "config.yaml"
    options = "ollama:\n  options:\n    num_ctx: 1024\n    num_predict: 900\n"
    path.write_text(f"model: llama3.1\ntools: [math]\n{options}")
    emu = emulator(answer("x"))
    done = llama_agent("run", str(path), "word " * 200, "--host", emu.url)
    assert done.returncode == ExitCode.ERROR, done.stderr
    assert "kept for the answer (num_predict)" in done.stderr
    assert "holds 1024" in done.stderr
    assert "ollama.options.num_predict" in done.stderr
