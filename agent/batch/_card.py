"""The dataset card of an export: Markdown with a YAML header, as Hugging Face dataset cards are.

The header carries what the Hub reads (`pretty_name`, `task_categories`, `tags`,
`size_categories`, `configs` pointing at the data file); the body says where the data came from
and what was left out, with the counts of `ExportReport`. Rename it `README.md` beside the data
file to use it as the card of a Hub dataset repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from agent.batch._export import NOT_EXACT, ExportReport

# The Hub's size buckets (the `size_categories` values its dataset cards use).
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)

_FORMAT_TEXT = {
    "native": (
        "Each line is one run in Llama 3.x's native format: `text` is the exact text the model "
        "saw and wrote, from `<|begin_of_text|>` to its final `<|eot_id|>`, and "
        "`completion_spans` the `[start, end)` character ranges the model wrote (its "
        "completions, tool calls and end tokens), so training learns only those."
    ),
    "messages": (
        "Each line is one run as Hugging Face chat messages, the form TRL's `SFTTrainer` reads: "
        "`messages` (tool calls in `tool_calls`, results as `tool` messages), `tools` (JSON "
        "schemas) and `chat_template_kwargs` (the Llama built-ins offered as `builtin_tools`, "
        "the run's date as `date_string`, which Meta's chat template reads). Meta's Llama 3.1 "
        "template takes one call per assistant message: a run with parallel calls needs a "
        "template that takes several."
    ),
}


def size_category(count: int) -> str:
    """The Hub's `size_categories` value for `count` examples."""
    for limit, name in _SIZES:
        if count < limit:
            return name
    return "n>100M"


def default_card_path(output: Path) -> Path:
    """Where the card goes when no path is given: beside the data file, `<name>.card.md`."""
    return output.with_name(output.stem + ".card.md")


def dataset_card(report: ExportReport, *, card_path: Path | None = None) -> str:
    """The card's Markdown for `report` (data file paths relative to `card_path`'s folder)."""
    where = (card_path or default_card_path(report.output)).parent
    data_file = Path(os.path.relpath(report.output, where)).as_posix()
    models = sorted(report.models)
    header: dict[str, Any] = {
        "pretty_name": f"llama-agent runs of {', '.join(models) or 'no model'}",
        "task_categories": ["text-generation"],
        "tags": ["llama-agent", "tool-use", "function-calling", "synthetic", "llama-3"],
        "size_categories": [size_category(report.exported)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": data_file}],
            }
        ],
    }
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        f"# {header['pretty_name']}",
        "",
        f"Agent runs of {_list(models)}, made with llama-agent and exported for fine-tuning "
        f"from `{report.source.name}` on {report.created}.",
        "",
        "## Format",
        "",
        f"`{data_file}`, JSON lines, format `{report.format}`. {_FORMAT_TEXT[report.format]}",
    ]
    if report.tokenized:
        lines += [
            "",
            "`input_ids` and `labels` are Llama 3 token ids; `labels` is -100 outside the "
            "completion spans.",
        ]
    lines += [
        "",
        "Every exported run replays exactly: rendering its messages up to each of its "
        "completions gives the prompt the run sent for it.",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| input runs | {report.input_runs} |",
        f"| exported | {report.exported} |",
        f"| skipped | {sum(report.skipped.values())} |",
        f"| model requests (steps) | {report.steps} |",
        f"| tool calls | {report.tool_calls} |",
        f"| Llama 3 tokens | {report.tokens}{_exactness(report)} |",
        f"| of which completions (trained on) | {report.completion_tokens}{_exactness(report)} |",
    ]
    if report.skipped:
        lines += ["", "### Skipped, by reason", "", "| reason | runs |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(report.skipped.items())]
        if report.skipped.get(NOT_EXACT):
            lines += [
                "",
                "A run that does not replay exactly (its messages do not render to the prompts "
                "it sent) is left out rather than exported approximately; the export's "
                "warnings name each one and why.",
            ]
    lines += ["", "## Source", "", "| model | runs |", "|---|---|"]
    lines += [f"| {model} | {report.models[model]} |" for model in models]
    if report.first_started:
        lines += ["", f"Runs started between {report.first_started} and {report.last_started}."]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'data = load_dataset("json", data_files="{data_file}", split="train")',
        "```",
    ]
    lines += ["", "## Filters", ""]
    lines += [
        "- runs that answered (every other status is left out)",
        f"- only runs whose check passed: {_yes(report.filters.get('only_passed'))}",
        f"- at most this many steps: {report.filters.get('max_steps') or 'no limit'}",
        "- one run per task (casefolded, whitespace collapsed; the best kept): "
        + _yes(report.filters.get("dedupe")),
        "",
    ]
    return "\n".join(lines)


def write_card(report: ExportReport, path: Path | None = None) -> Path:
    """Write the card (default: `default_card_path`) and return where it went."""
    path = path or default_card_path(report.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dataset_card(report, card_path=path), encoding="utf-8")
    return path


def _list(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "no model"


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _exactness(report: ExportReport) -> str:
    return "" if report.tokens_exact else " (estimated: install the tokenizer extra for exact)"
