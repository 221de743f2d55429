"""The `llama-agent` command (also `python -m agent`), a thin typer layer over the library."""

from agent.cli._app import app, main
from agent.cli._exit import ExitCode

__all__ = ["ExitCode", "app", "main"]
