"""The `llama-agent` command (also `python -m agent`), a thin typer layer over the library."""

from agent.cli._app import ExitCode, app, main

__all__ = ["ExitCode", "app", "main"]
