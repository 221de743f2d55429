"""`python -m agent`: the `llama-agent` command."""

from agent._cli import main

if __name__ == "__main__":
    main()
