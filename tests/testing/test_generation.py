"""What the emulator makes of a script's text: end tokens, control tokens, stops, limits."""

from hypothesis import given
from hypothesis import strategies as st

from agent.testing._response import run_generation, split_tokens

CALL = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'


@given(st.text())
def test_split_tokens_covers_every_character(text: str) -> None:
    assert "".join(split_tokens(text)) == text


def test_special_tokens_are_single_pieces() -> None:
    pieces = split_tokens('x"}<|eom_id|>')
    assert pieces[-1] == "<|eom_id|>"
    assert "".join(pieces[:-1]) == 'x"}'


def test_end_token_ends_generation_and_is_not_sent() -> None:
    gen = run_generation(
        "Hi there<|eot_id|>ignored",
        engine="llamarunner",
        stop=(),
        num_predict=None,
        chunk_chars=None,
    )
    assert gen.chunks == ("Hi", " there")
    assert gen.done_reason == "stop"
    assert gen.eval_count == 3  # PROTOCOL.md §1.3 sample: two pieces plus the EOT
    assert gen.generated == "Hi there"


def test_python_tag_is_text_on_llamarunner_and_empty_on_llama_server() -> None:
    old = run_generation(CALL, engine="llamarunner", stop=(), num_predict=None, chunk_chars=None)
    new = run_generation(CALL, engine="llama-server", stop=(), num_predict=None, chunk_chars=None)
    assert old.text.startswith("<|python_tag|>{")
    assert new.text.startswith('{"name"')
    assert "<|eom_id|>" not in old.text + new.text
    # The cache holds the token either way.
    assert new.generated.startswith("<|python_tag|>")


def test_stop_string_cuts_before_the_match() -> None:
    gen = run_generation(
        "one two<|start_header_id|>user",
        engine="llamarunner",
        stop=["<|start_header_id|>"],
        num_predict=None,
        chunk_chars=None,
    )
    assert gen.text == "one two"
    assert gen.done_reason == "stop"
    plain = run_generation(
        "alpha STOP beta", engine="llamarunner", stop=["STOP"], num_predict=None, chunk_chars=None
    )
    assert plain.text == "alpha "


def test_num_predict_gives_length() -> None:
    gen = run_generation(
        "a b c d e f<|eot_id|>", engine="llamarunner", stop=(), num_predict=3, chunk_chars=None
    )
    assert gen.text == "a b c"
    assert gen.done_reason == "length"
    assert gen.eval_count == 3


def test_missing_end_token_ends_the_turn_and_chunks_group() -> None:
    gen = run_generation(
        "abcdef ghijkl mnop", engine="llamarunner", stop=(), num_predict=None, chunk_chars=8
    )
    assert gen.done_reason == "stop"
    assert gen.text == "abcdef ghijkl mnop"
    assert all(len(c) >= 8 for c in gen.chunks[:-1])


def test_explicit_pieces_are_kept() -> None:
    gen = run_generation(
        ["Hel", "lo", "<|eot_id|>"],
        engine="llamarunner",
        stop=(),
        num_predict=None,
        chunk_chars=None,
    )
    assert gen.chunks == ("Hel", "lo")


def test_generated_through_a_chunk_includes_control_tokens_it_covers() -> None:
    # llama-server renders <|python_tag|> as empty text, but the model did generate it: a
    # stream cut after the first visible chunk leaves the tag in the cache too.
    gen = run_generation(
        '<|python_tag|>{"a": 1} tail<|eom_id|>',
        engine="llama-server",
        stop=(),
        num_predict=None,
        chunk_chars=4,
    )
    assert gen.chunks[0] == '{"a":'
    assert gen.generated_through(0) == ""
    assert gen.generated_through(1) == '<|python_tag|>{"a":'
    assert gen.generated_through(len(gen.chunks)) == gen.generated == '<|python_tag|>{"a": 1} tail'
