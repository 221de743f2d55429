"""llama-agent: Llama 3.x tool use in its native format, served by Ollama."""

__all__: list[str] = []
