"""The fine-tuning export: run records (`runs.jsonl`) as training data.

Two formats, one line per exported run:

- `native`: `{"id", "model", "text", "completion_spans"}`. `text` is the exact Llama 3.x text
  the model saw and wrote, `<|begin_of_text|>` to the final `<|eot_id|>`, rendered by
  `agent.llama3.render_prompt` from the record's messages, `render` settings and date.
  `completion_spans` are the `[start, end)` character ranges the model wrote itself: each
  completion as generated (`Message.raw`, calls included) and its end token, not the assistant
  header, which the prompt supplies. With `tokenize`, also `input_ids` and `labels` (-100 outside
  the spans), tokenized piece by piece at the span edges, as the server did: the prompt was
  tokenized on its own and the completion generated token by token after it.
- `messages`: the Hugging Face chat form TRL's SFT trainer reads: `messages` with `tool_calls`
  (`{"id", "type": "function", "function": {"name", "arguments"}}`, arguments an object) and
  `tool` messages (`tool_call_id`, `name`), `tools` (JSON schemas, `{"type": "function",
  "function": {...}}`), and `chat_template_kwargs` (which TRL hands the chat template): the
  Llama built-ins offered as `builtin_tools` and the run's date as `date_string`, the
  variables Meta's template reads.

Exactness: a run is exported only when its text replays. For each of the run's completions, the
messages before it must render to a prefix of the whole text followed by that completion, the
calls stored with it must be the calls it makes, and every request the run made must have its
completion in the messages. A run that does not replay
is skipped, with its reason counted and a warning, never exported approximately.

Filters: the run answered (other statuses are skipped, by status), `only_passed` (its check
passed), `max_steps`, `dedupe` (one run per task, compared casefolded with whitespace collapsed:
the best one, a passed check first, then fewer steps, then the first in the file).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import orjson

from agent.batch._record import RunRecord
from agent.errors import DeveloperError, RenderError
from agent.llama3 import (
    EOM,
    EOT,
    Message,
    ToolSpec,
    count_tokens,
    encode,
    model_family,
    parse_completion,
    render_prompt,
    special_token_spans,
    tokenizer_is_exact,
)

ExportFormat = Literal["native", "messages"]
FORMATS: tuple[ExportFormat, ...] = ("native", "messages")

IGNORE_INDEX = -100
"""The label of a token training does not learn (PyTorch's `CrossEntropyLoss` default)."""

# English whatever the locale (strftime's %b is not).
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"

# Skip reasons, as the card and the summary count them ("status error" is built per status).
NOT_EXACT = "does not replay exactly"
UNREADABLE = "unreadable line"
NOT_PASSED = "check not passed"
NO_CHECK = "no check"
TOO_LONG = "over max steps"
DUPLICATE = "duplicate task"


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


# --- replaying a run -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Replay:
    """A run's native text and where its completions are in it.

    `prompts[i]` is the prompt the run sent for its completion `i` (`text` begins with it),
    `spans[i]` the `[start, end)` of that completion and its end token in `text`; `messages`
    the conversation they were rendered from.
    """

    text: str
    prompts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    messages: tuple[Message, ...]


def replay(record: RunRecord) -> Replay:
    """Render `record` and check it replays (see the module docstring); `RenderError` says why
    it does not."""
    try:
        return _replay(record)
    except _Skip as exc:
        raise RenderError(f"run {record.id!r} {NOT_EXACT}: {exc.detail}") from None


def _replay(record: RunRecord) -> Replay:
    render = record.render
    model = str(render.get("model") or record.model or "")
    if not model:
        raise _Skip(NOT_EXACT, "the record names no model to render with")
    today: dt.date | None = None
    if record.today:
        try:
            today = dt.date.fromisoformat(record.today)
        except ValueError:
            raise _Skip(NOT_EXACT, f"its date {record.today!r} is not YYYY-MM-DD") from None
    elif model_family(model) == "3.1":
        # Llama 3.1's system prompt holds the date: without it the text would be guessed.
        raise _Skip(NOT_EXACT, "the record has no date, which Llama 3.1 prompts hold")
    try:
        messages = record.to_messages()
        specs = record.tool_specs()
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise _Skip(NOT_EXACT, f"its messages or tools cannot be read ({exc!r})") from None

    def prompt(upto: Sequence[Message]) -> str:
        return render_prompt(
            upto,
            specs,
            model=model,
            today=today,
            tool_format=render.get("tool_format"),
            tool_choice=str(render.get("tool_choice") or "auto"),
        )

    completions = [i for i, m in enumerate(messages) if m.role == "assistant" and m.raw is not None]
    if not completions or completions[-1] != len(messages) - 1:
        raise _Skip(NOT_EXACT, "its last message is not a completion of the model")
    if len(completions) < record.steps:
        raise _Skip(
            NOT_EXACT,
            f"it made {record.steps} requests but its messages hold {len(completions)} completions",
        )
    if messages[-1].stop_reason != "end_of_turn":
        raise _Skip(NOT_EXACT, "its last completion does not end the turn")
    try:
        whole = prompt(messages)
        # Earlier completions (history the run was given) are context: the run's own are last.
        own = completions[len(completions) - record.steps :] if record.steps else completions
        prompts = [prompt(messages[:i]) for i in own]
    except RenderError as exc:
        raise _Skip(NOT_EXACT, f"it does not render ({exc})") from None
    if not whole.endswith(_ASSISTANT_HEADER):
        raise _Skip(NOT_EXACT, "its rendering does not end with the assistant header")
    text = whole[: -len(_ASSISTANT_HEADER)]
    spans: list[tuple[int, int]] = []
    for index, before in zip(own, prompts, strict=True):
        raw = messages[index].raw or ""
        turn = raw if raw.endswith((EOT, EOM)) else raw + _end_token(messages[index])
        start, end = len(before), len(before) + len(turn)
        if not text.startswith(before) or text[start:end] != turn:
            raise _Skip(
                NOT_EXACT, f"the prompt before completion {len(spans) + 1} is not a prefix of it"
            )
        spans.append((start, end))
    if not text.endswith(EOT) or spans[-1][1] != len(text):
        raise _Skip(NOT_EXACT, "its text does not end with the model's <|eot_id|>")
    if specs:  # an agent without tools takes even a call-shaped reply as its answer
        for number, index in enumerate(own, 1):
            _same_calls(messages[index], specs, number)
    return Replay(text=text, prompts=tuple(prompts), spans=tuple(spans), messages=messages)


def _same_calls(message: Message, specs: Sequence[ToolSpec], number: int) -> None:
    """The calls the message holds are the calls its completion makes (the chat form is built
    from the former, the native text from the latter)."""
    # The names the run allowed: the record keeps a built-in's name, not the serving tool's,
    # which the model may also have called it by; a stored call shows that name was allowed.
    names = {s.builtin or s.name for s in specs} | {c.name for c in message.tool_calls}
    parsed = parse_completion(message.raw or "", tools=names)
    made = [(c.name, _plain(c.arguments)) for c in parsed.tool_calls]
    if made != [(c.name, _plain(c.arguments)) for c in message.tool_calls]:
        raise _Skip(
            NOT_EXACT, f"the calls stored for completion {number} are not the ones it makes"
        )


def _end_token(message: Message) -> str:
    return EOM if message.stop_reason == "end_of_message" else EOT


# --- the two formats -------------------------------------------------------------------------


def native_example(
    record: RunRecord, played: Replay | None = None, *, tokenize: bool = False
) -> dict[str, Any]:
    """One line of the `native` format (raises `RenderError` when the run does not replay)."""
    played = played or replay(record)
    line: dict[str, Any] = {
        "id": record.id,
        "model": record.model,
        "text": played.text,
        "completion_spans": [list(span) for span in played.spans],
    }
    if tokenize:
        line["input_ids"], line["labels"] = tokenize_spans(played.text, played.spans)
    return line


def tokenize_spans(text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """`input_ids` and `labels` of `text`: each piece between span edges tokenized on its own
    (special tokens as single ids), labels -100 outside the spans. Needs the `tokenizer` extra."""
    require_tokenizer()
    ids: list[int] = []
    labels: list[int] = []
    position = 0
    for start, end in (*spans, (len(text), len(text))):
        for piece, learn in ((text[position:start], False), (text[start:end], True)):
            if piece:
                piece_ids = _encode(piece)
                ids.extend(piece_ids)
                labels.extend(piece_ids if learn else [IGNORE_INDEX] * len(piece_ids))
        position = end
    return ids, labels


def _encode(text: str) -> list[int]:
    """`encode(text)`, a special token's id and each piece between them on its own (no BPE merge
    crosses a special token), so what every run repeats is tokenized once."""
    ids: list[int] = []
    position = 0
    for start, end in special_token_spans(text):
        if start > position:
            ids.extend(_piece_ids(text[position:start]))
        ids.extend(_piece_ids(text[start:end]))
        position = end
    if position < len(text):
        ids.extend(_piece_ids(text[position:]))
    return ids


@lru_cache(maxsize=4096)
def _piece_ids(piece: str) -> tuple[int, ...]:
    return tuple(encode(piece))


def require_tokenizer() -> None:
    """Raise `DeveloperError` unless the exact Llama 3 tokenizer is installed."""
    if not tokenizer_is_exact():
        raise DeveloperError(
            "--tokenize needs the exact Llama 3 tokenizer: pip install 'llama-agent[tokenizer]' "
            "(or set LLAMA_AGENT_TOKENIZER to Meta's tokenizer.model)"
        )


def messages_example(record: RunRecord) -> dict[str, Any]:
    """One line of the `messages` format: Hugging Face chat messages, `tools` and
    `chat_template_kwargs` (raises `RenderError` when the run does not replay)."""
    return _chat_form(record, replay(record))


def _chat_form(record: RunRecord, played: Replay) -> dict[str, Any]:
    call_names: dict[str, str] = {}
    messages: list[dict[str, Any]] = []
    for message in played.messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = []
            for call in message.tool_calls:
                call_names[call.id] = call.name
                item["tool_calls"].append(
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": _plain(call.arguments)},
                    }
                )
        if message.role == "tool":
            # Named as the call named it (a built-in's name), so calls and results agree.
            item["tool_call_id"] = message.tool_call_id
            item["name"] = call_names.get(message.tool_call_id or "", message.name)
        messages.append(item)
    specs = [] if record.render.get("tool_choice") == "none" else record.tool_specs()
    # TRL passes `chat_template_kwargs` to the chat template; Meta's Llama 3.x templates read
    # `builtin_tools` (any value, even an empty list, turns on "Environment: ipython") and
    # `date_string` (written "%d %b %Y"; their default is "26 Jul 2024").
    template: dict[str, Any] = {}
    builtins = [s.builtin for s in specs if s.builtin is not None]
    if builtins:
        template["builtin_tools"] = builtins
    if record.today:
        day = dt.date.fromisoformat(record.today)
        template["date_string"] = f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"
    line: dict[str, Any] = {
        "id": record.id,
        "messages": messages,
        "tools": [_json_schema(s) for s in specs if s.builtin is None],
    }
    if template:
        line["chat_template_kwargs"] = template
    return line


def _json_schema(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": _plain(spec.parameters),
        },
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- the whole file --------------------------------------------------------------------------


@dataclass(kw_only=True)
class ExportReport:
    """What an export read, wrote and skipped: the dataset card is written from it.

    `tokens` / `completion_tokens`: Llama 3 tokens of the exported texts and of their completion
    spans (exact when `tokens_exact`, else `count_tokens`' estimate). `warnings`: one line per
    run that did not replay or line that could not be read.
    """

    source: Path
    output: Path
    format: ExportFormat
    input_runs: int = 0
    exported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0
    completion_tokens: int = 0
    tokens_exact: bool = False
    tokenized: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    first_started: str | None = None
    last_started: str | None = None
    created: str = ""
    warnings: list[str] = field(default_factory=list)


def normalize_task(task: str) -> str:
    """The key `dedupe` compares: NFKC, casefolded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", task).casefold().split())


def export_runs(
    source: Path,
    output: Path,
    *,
    format: ExportFormat = "native",
    only_passed: bool = False,
    max_steps: int | None = None,
    dedupe: bool = False,
    tokenize: bool = False,
) -> ExportReport:
    """Export the answered runs of `source` (a batch's `runs.jsonl`) to `output` (JSON lines,
    written whole or not at all) and say what was exported and skipped."""
    if format not in FORMATS:
        raise DeveloperError(f"unknown export format {format!r}; use one of {list(FORMATS)}")
    if tokenize:
        if format != "native":
            raise DeveloperError("--tokenize works with --format native only; drop one of them")
        require_tokenizer()
    report = ExportReport(
        source=source,
        output=output,
        format=format,
        tokens_exact=tokenizer_is_exact(),
        tokenized=tokenize,
        filters={"only_passed": only_passed, "max_steps": max_steps, "dedupe": dedupe},
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    )
    eligible = _Eligibility(only_passed=only_passed, max_steps=max_steps)
    keep: set[int] | None = None
    if dedupe:
        # First pass: the best run of each task (only the eligible ones compete).
        best: dict[str, tuple[tuple[int, int, int], int]] = {}
        for number, record in _records(source, None):
            if isinstance(record, RunRecord) and eligible(record) is None:
                try:
                    _replay(record)
                except _Skip:
                    continue
                key, rank = normalize_task(record.task), _rank(record, number)
                if key not in best or rank < best[key][0]:
                    best[key] = (rank, number)
        keep = {number for _, number in best.values()}
    write = _Writer(output)
    with write:
        for number, record in _records(source, report):
            report.input_runs += 1
            if not isinstance(record, RunRecord):
                report.skipped[UNREADABLE] += 1
                report.warnings.append(f"{source}:{number}: {record}")
                continue
            reason = eligible(record)
            if reason is not None:
                report.skipped[reason] += 1
                continue
            try:
                played = _replay(record)
            except _Skip as exc:
                report.skipped[exc.reason] += 1
                report.warnings.append(f"{source}:{number}: run {record.id!r}: {exc.detail}")
                continue
            if keep is not None and number not in keep:
                report.skipped[DUPLICATE] += 1
                continue
            if format == "native":
                line = native_example(record, played, tokenize=tokenize)
            else:
                line = _chat_form(record, played)
            write(line)
            _count(report, record, played, line.get("labels"))
    return report


class _Eligibility:
    """The filters before exactness: status, check, steps. Returns the skip reason or None."""

    def __init__(self, *, only_passed: bool, max_steps: int | None) -> None:
        self.only_passed = only_passed
        self.max_steps = max_steps

    def __call__(self, record: RunRecord) -> str | None:
        if record.status != "answered":
            return f"status {record.status}"
        if self.only_passed:
            if record.check is None or record.check.passed is None:
                return NO_CHECK
            if not record.check.passed:
                return NOT_PASSED
        if self.max_steps is not None and record.steps > self.max_steps:
            return TOO_LONG
        return None


def _rank(record: RunRecord, number: int) -> tuple[int, int, int]:
    passed = record.check.passed if record.check is not None else None
    return (0 if passed else 1 if passed is None else 2, record.steps, number)


def _records(source: Path, report: ExportReport | None) -> Iterator[tuple[int, RunRecord | str]]:
    """(line number, record or why the line cannot be read), blank lines left out."""
    with source.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = RunRecord.from_json(line)
            except DeveloperError as exc:
                yield number, str(exc)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Right keys, wrong kinds of values ("steps": "two"): not a record either.
                yield number, f"not a run record ({exc!r})"
            else:
                yield number, record


def _count(
    report: ExportReport, record: RunRecord, played: Replay, labels: list[int] | None
) -> None:
    report.exported += 1
    report.models[record.model or "unknown"] += 1
    report.steps += record.steps
    report.tool_calls += sum(len(m.get("tool_calls") or ()) for m in record.messages)
    if labels is not None:
        report.tokens += len(labels)
        report.completion_tokens += sum(1 for label in labels if label != IGNORE_INDEX)
    else:
        report.tokens += _tokens(played.text)
        report.completion_tokens += sum(_tokens(played.text[s:e]) for s, e in played.spans)
    started = record.timing.get("started")
    if isinstance(started, str):
        if report.first_started is None or started < report.first_started:
            report.first_started = started
        if report.last_started is None or started > report.last_started:
            report.last_started = started


def _tokens(text: str) -> int:
    """`count_tokens(text)`, counted between special tokens (no BPE merge crosses one), so the
    pieces every run repeats (the system prompt, the tool block) are tokenized once."""
    total = position = 0
    for start, end in special_token_spans(text):
        if start > position:
            total += _piece_tokens(text[position:start])
        total += 1
        position = end
    if position < len(text):
        total += _piece_tokens(text[position:])
    return total


@lru_cache(maxsize=4096)
def _piece_tokens(piece: str) -> int:
    return count_tokens(piece)


class _Writer:
    """JSON lines into a temporary file beside `path`, renamed over it at the end: a failed
    export never leaves half a dataset where a whole one is expected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None
        self._dumps: Callable[[Any], bytes] = lambda v: orjson.dumps(
            v, option=orjson.OPT_APPEND_NEWLINE
        )

    def __enter__(self) -> _Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self._file = os.fdopen(handle, "wb")
        self._name = name
        return self

    def __call__(self, line: Mapping[str, Any]) -> None:
        self._file.write(self._dumps(line))

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._file.close()
        if kind is None:
            os.replace(self._name, self.path)
        else:
            os.unlink(self._name)
