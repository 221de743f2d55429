"""What the numbers were measured on: CPU, cores, memory, load, Python, package versions."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "llama-agent",
    "ollama",
    "httpx",
    "httpx-aiohttp",
    "aiohttp",
    "anyio",
    "h11",
    "pydantic",
    "jsonschema",
    "tiktoken",
    "llama-models",
)


def _proc_field(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _bwrap() -> str | None:
    path = shutil.which("bwrap")
    if path is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or path
    return path


def describe() -> dict[str, Any]:
    """The machine and software, as JSON-ready data."""
    from agent.llama3 import tokenizer_is_exact

    memory_kb = int((_proc_field("/proc/meminfo", "MemTotal") or "0 kB").split()[0])
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": f"{memory_kb / 2**20:.1f} GiB" if memory_kb else "unknown",
        "memory_kb": memory_kb,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": {p: _version(p) for p in PACKAGES},
        "exact_tokenizer": tokenizer_is_exact(),
        "bubblewrap": _bwrap(),
    }


def summary(machine: dict[str, Any]) -> str:
    """One line for the table's header."""
    load = ", ".join(f"{x:.2f}" for x in machine["load_average"])
    return (
        f"{machine['cpu']}, {machine['usable_cores']} cores, {machine['memory']}, "
        f"{machine['python']}, load {load}"
    )
