"""`python -m agent`: the `llama-agent` command."""

from agent.cli import main

if __name__ == "__main__":
    main()
