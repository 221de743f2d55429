"""Turn a script's completion text into what Ollama would stream (PROTOCOL.md §1.5, §6).

The script writes what the model *generates*, Llama-native, end tokens included:
`'<|python_tag|>{"name": "f", "parameters": {}}<|eom_id|>'`. Ollama never returns end-of-generation
text, so the emulator does what the server does:

* the first `<|eot_id|>`, `<|eom_id|>` or `<|end_of_text|>` ends the generation; neither it nor
  anything after it is sent, and `done_reason` is `"stop"` (eom and eot look the same);
* other control tokens (`<|python_tag|>`, a stray `<|start_header_id|>`) are sent as text by the
  `llamarunner` engine (Ollama ≤ 0.29) and as empty text by `llama-server` (≥ 0.30, raw mode);
* stop strings (the Modelfile's, or `options.stop`, which replaces them) cut the text before the
  first match; the match is not sent; `done_reason` is `"stop"`;
* `num_predict` caps the tokens; reaching it gives `done_reason` `"length"`;
* a script text with no end token ends as if `<|eot_id|>` followed it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Engine = Literal["llamarunner", "llama-server"]

SPECIAL_RE = re.compile(r"<\|[a-z_0-9]+\|>")
EOG_TOKENS = frozenset({"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"})
# An approximation of Llama 3's pre-tokenizer (no \p{L} in `re`): word pieces with their leading
# space, digit triples, punctuation runs, newlines. One piece per streamed chunk, like Ollama.
_PIECE_RE = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+|[\s\S]"
)


def split_tokens(text: str) -> list[str]:
    """Split into token-like pieces; each special token is one piece."""
    pieces: list[str] = []
    position = 0
    for match in SPECIAL_RE.finditer(text):
        pieces.extend(_PIECE_RE.findall(text[position : match.start()]))
        pieces.append(match.group())
        position = match.end()
    pieces.extend(_PIECE_RE.findall(text[position:]))
    return pieces


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What to stream for one request."""

    chunks: tuple[str, ...]
    done_reason: Literal["stop", "length"]
    eval_count: int
    generated: str  # the generated tokens as text (control tokens included): the KV cache's view
    chunk_ends: tuple[int, ...] = ()  # where each chunk's tokens end in `generated`

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def generated_through(self, chunks: int) -> str:
        """The generated text once the first `chunks` chunks were produced (what the server's
        cache holds when the stream stops there)."""
        if chunks >= len(self.chunks):
            return self.generated
        return self.generated[: self.chunk_ends[chunks - 1]] if chunks > 0 else ""


def run_generation(
    output: str | Sequence[str],
    *,
    engine: Engine,
    stop: Sequence[str],
    num_predict: int | None,
    chunk_chars: int | None,
) -> Generation:
    """Apply end tokens, control-token rendering, stop strings and `num_predict` to `output`."""
    if isinstance(output, str):
        tokens = split_tokens(output)
    else:
        tokens = [p for piece in output for p in _split_specials(piece)]
    limit = num_predict if num_predict is not None and num_predict > 0 else None

    generated: list[str] = []
    rendered: list[str] = []
    done_reason: Literal["stop", "length"] = "stop"
    hit_eog = False
    for token in tokens:
        if limit is not None and len(generated) >= limit:
            done_reason = "length"
            break
        if token in EOG_TOKENS:
            hit_eog = True
            break
        generated.append(token)
        control = token.startswith("<|") and SPECIAL_RE.fullmatch(token) is not None
        rendered.append("" if control and engine == "llama-server" else token)

    cut = _first_stop(rendered, stop)
    eval_count = len(generated) + (1 if hit_eog else 0)
    if cut is not None:
        index, offset = cut
        kept = [*rendered[:index], rendered[index][:offset]]
        generated = generated[: index + 1]
        done_reason = "stop"
        eval_count = index + 1
        rendered = kept
    offsets = [0]
    for token in generated:
        offsets.append(offsets[-1] + len(token))
    grouped = [(c, end) for c, end in _group(rendered, chunk_chars) if c]
    return Generation(
        chunks=tuple(c for c, _ in grouped),
        done_reason=done_reason,
        eval_count=max(eval_count, 1),
        generated="".join(generated),
        chunk_ends=tuple(offsets[min(end, len(generated))] for _, end in grouped),
    )


def _split_specials(piece: str) -> list[str]:
    parts: list[str] = []
    position = 0
    for match in SPECIAL_RE.finditer(piece):
        if match.start() > position:
            parts.append(piece[position : match.start()])
        parts.append(match.group())
        position = match.end()
    if position < len(piece):
        parts.append(piece[position:])
    return parts


def _first_stop(rendered: list[str], stop: Sequence[str]) -> tuple[int, int] | None:
    """(token index, offset in it) where the earliest stop string starts, if any."""
    text = "".join(rendered)
    positions = [text.find(s) for s in stop if s]
    found = [p for p in positions if p >= 0]
    if not found:
        return None
    at = min(found)
    consumed = 0
    for index, piece in enumerate(rendered):
        if at < consumed + len(piece) or (at == consumed and not piece):
            return index, at - consumed
        consumed += len(piece)
    return len(rendered) - 1, len(rendered[-1])


def _group(pieces: list[str], chunk_chars: int | None) -> list[tuple[str, int]]:
    """Chunks of `pieces`, each with the index just after its last piece."""
    if not chunk_chars or chunk_chars <= 0:
        return [(piece, index + 1) for index, piece in enumerate(pieces)]
    chunks: list[tuple[str, int]] = []
    current = ""
    for index, piece in enumerate(pieces):
        current += piece
        if len(current) >= chunk_chars:
            chunks.append((current, index + 1))
            current = ""
    if current:
        chunks.append((current, len(pieces)))
    return chunks
