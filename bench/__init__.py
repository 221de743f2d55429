"""Benchmarks of llama-agent's own cost, next to the model's (issue 8).

`python -m bench` runs every section against `agent.testing.OllamaEmulator`, prints a table and
writes `bench/RESULTS.md` and `bench/results.json` (see `bench.run`). The older single-purpose
scripts (`bench_client.py`, `bench_tools.py`, `bench_validate.py`) still run on their own.
"""
