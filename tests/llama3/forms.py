# ruff: noqa: E501  (a table of literal model outputs reads best one case per line)
"""Extra parse cases: every form Llama 3.x writes calls in, and what must not become a call.

Each case: `raw` (the completion, special tokens as text), optional `tools` (names offered),
the expected `calls` as (name, arguments) pairs in order, and optionally the expected `content`
(compared after strip), the number of `malformed` calls, and the `stop` reason.
"""

from __future__ import annotations

from typing import Any

W = {"city": "Paris"}
TOOLS = ["get_weather", "get_time", "brave_search", "wolfram_alpha", "code_interpreter"]


def case(
    id: str,
    raw: str,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
    *,
    tools: list[str] | None = None,
    content: str | None = None,
    malformed: int = 0,
    stop: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "raw": raw,
        "calls": calls or [],
        "tools": tools,
        "content": content,
        "malformed": malformed,
        "stop": stop,
    }


CASES = [
    # --- JSON ----------------------------------------------------------------------------------
    case(
        "json_plain",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        [("get_weather", W)],
    ),
    case(
        "json_arguments_key",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        [("get_weather", W)],
    ),
    case(
        "json_type_function",
        '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>',
        [("get_weather", W)],
        stop="end_of_message",
    ),
    case(
        "json_args_string",
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
        [("get_weather", W)],
    ),
    case("json_args_empty_string", '{"name": "get_time", "arguments": ""}', [("get_time", {})]),
    case(
        "json_openai_envelope",
        '{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',
        [("get_weather", W)],
    ),
    case(
        "json_openai_envelope_dict",
        '{"function": {"name": "get_weather", "parameters": {"city": "Paris"}}}',
        [("get_weather", W)],
    ),
    case(
        "json_tool_calls_wrapper",
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "UTC"}}]}',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "json_function_name_key",
        '{"function": "get_weather", "parameters": {"city": "Paris"}}',
        [("get_weather", W)],
    ),
    case("json_name_only", '{"name": "get_time"}', [("get_time", {})], tools=TOOLS),
    case(
        "json_newline_separated",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}\n{"name": "get_time", "parameters": {"tz": "UTC"}}',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "json_semicolon_no_space",
        '{"name": "get_weather", "parameters": {"city": "Paris"}};{"name": "get_time", "parameters": {"tz": "UTC"}};',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
        content="",
    ),
    case(
        "json_concatenated",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}{"name": "get_time", "parameters": {"tz": "UTC"}}',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "json_array_pretty",
        '[\n  {\n    "name": "get_weather",\n    "parameters": {"city": "Paris"}\n  }\n]',
        [("get_weather", W)],
    ),
    case(
        "json_fence_plain",
        '```\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
        [("get_weather", W)],
        content="",
    ),
    case(
        "json_fence_prose_around",
        'I will check.\n```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```\nOne moment.',
        [("get_weather", W)],
        content="I will check.\n\nOne moment.",
    ),
    case(
        "json_prose_then_newline_call",
        "Let me look that up.\n\n" + '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        [("get_weather", W)],
        content="Let me look that up.",
    ),
    case(
        "json_call_then_prose_line",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}\n\nThis gives the weather.',
        [("get_weather", W)],
        content="This gives the weather.",
    ),
    case(
        "json_braces_in_strings",
        '{"name": "echo", "parameters": {"text": "a } b { c \\" d"}}',
        [("echo", {"text": 'a } b { c " d'})],
    ),
    case(
        "json_raw_newline_in_string",
        '{"name": "run", "parameters": {"code": "import os\nprint(1)"}}',
        [("run", {"code": "import os\nprint(1)"})],
    ),
    case(
        "json_trailing_comma",
        '{"name": "get_weather", "parameters": {"city": "Paris",},}',
        [("get_weather", W)],
    ),
    case(
        "json_python_literals",
        "{'name': 'set', 'parameters': {'on': True, 'v': None}}",
        [("set", {"on": True, "v": None})],
    ),
    case(
        "json_unicode_escapes",
        '{"name": "say", "parameters": {"text": "caf\\u00e9 \\ud83e\\udd99"}}',
        [("say", {"text": "café 🦙"})],
    ),
    case(
        "json_deep_nesting",
        '{"name": "f", "parameters": {"a": {"b": {"c": {"d": [1, {"e": null}]}}}}}',
        [("f", {"a": {"b": {"c": {"d": [1, {"e": None}]}}}})],
    ),
    case(
        "json_negative_numbers",
        '{"name": "move", "parameters": {"dx": -3, "dy": 2.5e3}}',
        [("move", {"dx": -3, "dy": 2500.0})],
    ),
    case(
        "json_builtin_code_name",
        '{"name": "code_interpreter", "parameters": {"source": "print(1)"}}',
        [("code_interpreter", {"source": "print(1)"})],  # kept: the toolkit tells the model
    ),
    case(
        "json_after_python_tag_with_prose",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}\nChecking now.',
        [("get_weather", W)],
        content="Checking now.",
    ),
    case(
        "json_eom_with_trailing_newlines",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>\n\n',
        [("get_weather", W)],
        stop="end_of_message",
    ),
    case(
        "json_leading_header",
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}',
        [("get_weather", W)],
    ),
    # --- JSON that is not a call -----------------------------------------------------------------
    case(
        "json_answer_object", '{"answer": 42, "unit": "km"}', content='{"answer": 42, "unit": "km"}'
    ),
    case(
        "json_definition_echo",
        '{"name": "get_weather", "description": "Get weather", "parameters": {"city": "x"}}',
        content='{"name": "get_weather", "description": "Get weather", "parameters": {"city": "x"}}',
    ),
    case(
        "json_type_other",
        '{"type": "person", "name": "Bob", "parameters": {}}',
        content='{"type": "person", "name": "Bob", "parameters": {}}',
    ),
    case(
        "json_name_not_identifier",
        '{"name": "Alice Smith", "parameters": {}}',
        content='{"name": "Alice Smith", "parameters": {}}',
    ),
    # Exactly a call (a name and an arguments object) and nothing else, naming no offered tool:
    # the model tried to call a tool that does not exist. Returning it as the answer would end
    # the run on a failed call, so it is reported (the loop tells the model the real tools).
    # The same object inside prose stays data (next cases), as does JSON of any other shape.
    case(
        "json_unknown_tool_alone_is_reported",
        '{"name": "lookup_user", "parameters": {"id": 3}}',
        tools=TOOLS,
        malformed=1,
        stop="end_of_message",
    ),
    case(
        "json_unknown_tool_after_prose_is_data",
        'Here is the record:\n{"name": "lookup_user", "parameters": {"id": 3}}',
        tools=TOOLS,
        content='Here is the record:\n{"name": "lookup_user", "parameters": {"id": 3}}',
    ),
    case(
        "json_unknown_tool_envelope_alone",
        '{"type": "function", "function": {"name": "nope", "arguments": {}}}<|eom_id|>',
        tools=TOOLS,
        malformed=1,
    ),
    case(
        "json_unknown_tool_list_alone",
        '```json\n[{"name": "nope", "arguments": {}}, {"name": "nada", "parameters": {"a": 1}}]\n```',
        tools=TOOLS,
        malformed=2,
    ),
    case(
        "json_unknown_tool_type_function",
        '{"type": "function", "name": "nope", "parameters": {"a": 1}}',
        tools=TOOLS,
        malformed=1,
    ),
    case(
        "json_name_and_data_is_data",
        '{"name": "Alice", "age": 3}',
        tools=TOOLS,
        content='{"name": "Alice", "age": 3}',
    ),
    case(
        "json_unknown_tool_extra_key_is_data",
        '{"name": "lookup_user", "parameters": {"id": 3}, "score": 0.5}',
        tools=TOOLS,
        content='{"name": "lookup_user", "parameters": {"id": 3}, "score": 0.5}',
    ),
    # A name with no arguments is a call only as a lone object that names an offered tool
    # (`json_name_only`); in a list, after prose, with another name, or with no tool list it
    # is a record that happens to have a name.
    case(
        "json_name_only_list_after_prose_is_data",
        'Products: [{"name": "get_weather", "id": 7}, {"name": "get_time", "id": 8}]',
        tools=TOOLS,
        content='Products: [{"name": "get_weather", "id": 7}, {"name": "get_time", "id": 8}]',
    ),
    case(
        "json_name_only_list_alone_is_data",
        '[{"name": "get_weather", "id": 7}, {"name": "get_time", "id": 8}]',
        tools=TOOLS,
        content='[{"name": "get_weather", "id": 7}, {"name": "get_time", "id": 8}]',
    ),
    case(
        "json_name_only_after_prose_is_data",
        'The tool I would use:\n{"name": "get_time"}',
        tools=TOOLS,
        content='The tool I would use:\n{"name": "get_time"}',
    ),
    case(
        "json_name_only_unknown_is_data",
        '{"name": "Alice"}',
        tools=TOOLS,
        content='{"name": "Alice"}',
    ),
    case(
        "json_name_only_no_tool_list_is_data",
        '{"name": "get_time"}',
        content='{"name": "get_time"}',
    ),
    case(
        "json_name_only_tagged_is_call",
        '<|python_tag|>{"name": "get_time"}',
        [("get_time", {})],
        tools=TOOLS,
    ),
    case(
        "json_name_only_beside_a_call",
        '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time"}]',
        [("get_weather", W), ("get_time", {})],
        tools=TOOLS,
    ),
    case(
        "json_nested_call_shape_is_data",
        '{"result": {"name": "get_weather", "parameters": {"city": "Paris"}}}',
        content='{"result": {"name": "get_weather", "parameters": {"city": "Paris"}}}',
    ),
    case(
        "json_list_of_data",
        '[{"name": "Alice"}, {"age": 3}]',
        content='[{"name": "Alice"}, {"age": 3}]',
    ),
    case(
        "json_mentioned_inline",
        'Send {"name": "get_weather", "parameters": {"city": "Paris"}} to the API yourself.',
        content='Send {"name": "get_weather", "parameters": {"city": "Paris"}} to the API yourself.',
    ),
    case(
        "json_in_prose_braces",
        "Use {placeholders} and [brackets] (parens) freely.",
        content="Use {placeholders} and [brackets] (parens) freely.",
    ),
    case(
        "markdown_link",
        "See [the docs](https://example.com/a_(b)) and [Bob's page](x).",
        content="See [the docs](https://example.com/a_(b)) and [Bob's page](x).",
    ),
    case(
        "unbalanced_prose",
        "An open { brace and a [ bracket, never closed.",
        content="An open { brace and a [ bracket, never closed.",
    ),
    # --- broken JSON calls -------------------------------------------------------------------------
    case(
        "json_truncated_with_tag",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Par',
        malformed=1,
        content='{"name": "get_weather", "parameters": {"city": "Par',
    ),
    case(
        "json_truncated_no_tag",
        '{"name": "get_weather", "parameters": {"ci',
        tools=TOOLS,
        malformed=1,
    ),
    case(
        "json_truncated_unknown_tool_is_prose",
        '{"name": "nope", "parameters": {"ci',
        tools=TOOLS,
        malformed=0,
        content='{"name": "nope", "parameters": {"ci',
    ),
    case("json_args_list", '{"name": "get_weather", "parameters": ["Paris"]}', malformed=1),
    case("json_args_bad_string", '{"name": "get_weather", "arguments": "city=Paris"}', malformed=1),
    case(
        "json_garbled_with_tag",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}}}',
        malformed=0,
        calls=[("get_weather", W)],
    ),
    case(
        "json_mixed_known_unknown",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_wether", "parameters": {}}',
        [("get_weather", W)],
        tools=TOOLS,
        malformed=1,
    ),
    # --- python list (3.2 / 3.3) ---------------------------------------------------------------
    case(
        "pylist_types",
        '[set_alarm(hour=7, minute=-5, on=True, label=None, days=["mon", "tue"], meta={"a": 1})]',
        [
            (
                "set_alarm",
                {
                    "hour": 7,
                    "minute": -5,
                    "on": True,
                    "label": None,
                    "days": ["mon", "tue"],
                    "meta": {"a": 1},
                },
            )
        ],
    ),
    case(
        "pylist_json_literals",
        "[set(on=true, off=false, v=null)]",
        [("set", {"on": True, "off": False, "v": None})],
    ),
    case("pylist_no_args", "[get_random_joke()]", [("get_random_joke", {})]),
    case(
        "pylist_multiline",
        '[\n    get_weather(city="Paris"),\n    get_time(tz="UTC")\n]',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "pylist_fenced",
        '```python\n[get_weather(city="Paris")]\n```',
        [("get_weather", W)],
        content="",
    ),
    case(
        "pylist_prose_after_line",
        '[get_weather(city="Paris")]\nI will now check.',
        [("get_weather", W)],
        content="I will now check.",
    ),
    case(
        "pylist_triple_quoted", '[run(code="""print("hi")""")]', [("run", {"code": 'print("hi")'})]
    ),
    case("pylist_positional_is_malformed", '[get_weather("Paris")]', tools=TOOLS, malformed=1),
    case(
        "pylist_non_literal_is_malformed", "[get_weather(city=input())]", tools=TOOLS, malformed=1
    ),
    case("pylist_unknown_tool_is_data", "[lookup(x=1)]", tools=TOOLS, content="[lookup(x=1)]"),
    case(
        "pylist_mention_inline",
        'Call [get_weather(city="Paris")] whenever you like.',
        content='Call [get_weather(city="Paris")] whenever you like.',
    ),
    case("pylist_list_of_strings", '["a", "b"]', content='["a", "b"]'),
    case("pylist_truncated", '[get_weather(city="Pa', tools=TOOLS, malformed=1),
    # --- bare calls ---------------------------------------------------------------------------------
    case(
        "bare_two",
        'get_weather(city="Paris"); get_time(tz="UTC")',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "bare_with_prose_after_is_prose",
        'get_weather(city="Paris") is what I would call.',
        content='get_weather(city="Paris") is what I would call.',
    ),
    case("bare_unknown_tool_is_prose", "print(x=1)", tools=TOOLS, content="print(x=1)"),
    case(
        "bare_in_sentence",
        'You could call get_weather(city="Paris").',
        content='You could call get_weather(city="Paris").',
    ),
    case("word_then_paren_prose", "Paris(France) is lovely.", content="Paris(France) is lovely."),
    # --- <function=...> --------------------------------------------------------------------------
    case(
        "ftag_multiline_json",
        '<function=create>{\n  "title": "Lunch",\n  "meta": {"room": 5}\n}</function>',
        [("create", {"title": "Lunch", "meta": {"room": 5}})],
    ),
    case("ftag_python_dict", "<function=search>{'q': 'x'}</function>", [("search", {"q": "x"})]),
    case(
        "ftag_space_before_json",
        '<function=get_weather> {"city": "Paris"} </function>',
        [("get_weather", W)],
    ),
    case("ftag_empty_body", "<function=get_time></function>", [("get_time", {})]),
    case(
        "ftag_newline_separated",
        '<function=get_weather>{"city": "Paris"}</function>\n<function=get_time>{"tz": "UTC"}</function>',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    case(
        "ftag_prose_before",
        'Let me check.\n<function=get_weather>{"city": "Paris"}</function>',
        [("get_weather", W)],
        content="Let me check.",
    ),
    case("ftag_truncated", '<function=get_weather>{"city": "Par', malformed=1),
    case("ftag_no_json", "<function=get_weather>Paris</function>", malformed=1),
    case("ftag_unknown_tool", '<function=nope>{"a": 1}</function>', tools=TOOLS, malformed=1),
    case(
        "ftag_mention_in_code_span",
        "Write `<function=name>{...}</function>` to call one.",
        content="Write `<function=name>{...}</function>` to call one.",
    ),
    case("ftag_not_a_tag", "a <function=f is not closed", content="a <function=f is not closed"),
    case(
        "ftag_python_tag_repeated",
        '<|python_tag|><function=get_weather>{"city": "Paris"}</function><|python_tag|><function=get_time>{"tz": "UTC"}</function>',
        [("get_weather", W), ("get_time", {"tz": "UTC"})],
    ),
    # --- built-ins --------------------------------------------------------------------------------
    case(
        "brave_no_tag",
        'brave_search.call(query="llama 3.1 release date")',
        [("brave_search", {"query": "llama 3.1 release date"})],
        stop="end_of_message",
    ),
    case(
        "brave_prose_then_call",
        'Let me search. brave_search.call(query="x")',
        [("brave_search", {"query": "x"})],
        content="Let me search.",
    ),
    case(
        "brave_escaped_quotes",
        '<|python_tag|>brave_search.call(query="who said \\"to be\\"")<|eom_id|>',
        [("brave_search", {"query": 'who said "to be"'})],
    ),
    case(
        "brave_unescaped_quotes_meta_style",
        '<|python_tag|>brave_search.call(query="who said "to be or not to be"")',
        [("brave_search", {"query": 'who said "to be or not to be"'})],
    ),
    case(
        "brave_extra_kwargs",
        '<|python_tag|>brave_search.call(query="x", count=5)',
        [("brave_search", {"query": "x", "count": 5})],
    ),
    case(
        "brave_positional",
        '<|python_tag|>brave_search.call("llamas")',
        [("brave_search", {"query": "llamas"})],
    ),
    case(
        "wolfram",
        '<|python_tag|>wolfram_alpha.call(query="solve x^2 = 4")<|eom_id|>',
        [("wolfram_alpha", {"query": "solve x^2 = 4"})],
    ),
    case(
        "builtin_two_tags",
        '<|python_tag|>brave_search.call(query="a")<|python_tag|>wolfram_alpha.call(query="b")',
        [("brave_search", {"query": "a"}), ("wolfram_alpha", {"query": "b"})],
    ),
    case(
        "builtin_two_lines_no_tag",
        'brave_search.call(query="a")\nwolfram_alpha.call(query="b")',
        [("brave_search", {"query": "a"}), ("wolfram_alpha", {"query": "b"})],
    ),
    case("builtin_not_offered", 'brave_search.call(query="x")', tools=["get_weather"], malformed=1),
    # A dotted call with words after it on its line is quoted, not made; on its own line, at
    # the end of the text, or after the tag it is a call.
    case(
        "builtin_then_words_is_mention",
        'brave_search.call(query="x") is how the model searches.',
        content='brave_search.call(query="x") is how the model searches.',
    ),
    case(
        "builtin_sentence_around_is_mention",
        'Let me search. brave_search.call(query="x") Then I will answer.',
        content='Let me search. brave_search.call(query="x") Then I will answer.',
    ),
    case(
        "builtin_then_period_is_call",
        'brave_search.call(query="x").',
        [("brave_search", {"query": "x"})],
    ),
    case(
        "builtin_then_prose_next_line_is_call",
        'brave_search.call(query="x")\nSearching now.',
        [("brave_search", {"query": "x"})],
        content="Searching now.",
    ),
    case(
        "builtin_tagged_then_words_is_call",
        '<|python_tag|>brave_search.call(query="x") is the search',
        [("brave_search", {"query": "x"})],
        content="is the search",
    ),
    case(
        "builtin_in_backticks",
        'Use `brave_search.call(query="x")` to search.',
        content='Use `brave_search.call(query="x")` to search.',
    ),
    case(
        "builtin_word_boundary",
        'my_brave_search.call(query="x") is mine',
        content='my_brave_search.call(query="x") is mine',
    ),
    case("builtin_truncated", '<|python_tag|>brave_search.call(query="llam', malformed=1),
    case(
        "builtin_pylist_form", '[wolfram_alpha(query="2+2")]', [("wolfram_alpha", {"query": "2+2"})]
    ),
    case("builtin_pylist_other_arg", '[brave_search(q="x")]', [("brave_search", {"q": "x"})]),
    # --- code_interpreter -------------------------------------------------------------------------
    case(
        "code_contains_builtin_call",
        '<|python_tag|>r = brave_search.call(query="x")\nprint(r)',
        [("code_interpreter", {"code": 'r = brave_search.call(query="x")\nprint(r)'})],
    ),
    case(
        "code_fenced_after_tag",
        "<|python_tag|>```python\nprint(1)\n```",
        [("code_interpreter", {"code": "print(1)"})],
    ),
    case(
        "code_after_prose",
        "I'll compute it.\n<|python_tag|>print(2**100)<|eom_id|>",
        [("code_interpreter", {"code": "print(2**100)"})],
        content="I'll compute it.",
    ),
    case("code_not_offered", "<|python_tag|>print(1)", tools=["get_weather"], malformed=1),
    case(
        "code_unknown_pylist_is_code",
        '<|python_tag|>[print(end="x")]',
        [("code_interpreter", {"code": '[print(end="x")]'})],
        tools=TOOLS,
    ),
    case(
        "code_dotcall_unknown_name",
        '<|python_tag|>foo.call(query="x")',
        [("code_interpreter", {"code": 'foo.call(query="x")'})],
    ),
    case("code_empty_tag", "<|python_tag|><|eom_id|>", malformed=1, content=""),
    case("code_tag_whitespace", "<|python_tag|>  \n", malformed=1, content=""),
    # --- plain answers and stop tokens -------------------------------------------------------------
    case(
        "plain_multiline",
        "Line one.\n\nLine two with `code` and a list:\n- a\n- b",
        content="Line one.\n\nLine two with `code` and a list:\n- a\n- b",
        stop="end_of_turn",
    ),
    case(
        "plain_text_after_eot_ignored",
        'Done.<|eot_id|>garbage {"name": "get_time"}',
        content="Done.",
    ),
    case(
        "plain_reserved_token_dropped", "Hi<|reserved_special_token_5|> there", content="Hi there"
    ),
    case(
        "plain_stray_header_stops",
        "Answer.<|start_header_id|>user<|end_header_id|>\n\nmore",
        content="Answer.",
    ),
    case(
        "plain_code_block",
        "```python\ndef f(x):\n    return {x: [x]}\n```",
        content="```python\ndef f(x):\n    return {x: [x]}\n```",
    ),
    case(
        "plain_neutralized_echo",
        "The page said <\u200c|eot_id|> there.",
        content="The page said <\u200c|eot_id|> there.",
    ),
    case("plain_partial_special", "a <|not_special|> b", content="a <|not_special|> b"),
    case(
        "stop_inferred_pylist",
        '[get_time(tz="UTC")]',
        [("get_time", {"tz": "UTC"})],
        stop="end_of_turn",
    ),
    case(
        "stop_inferred_tag",
        "<|python_tag|>print(1)",
        [("code_interpreter", {"code": "print(1)"})],
        stop="end_of_message",
    ),
    case(
        "stop_eot_wins",
        "<|python_tag|>print(1)<|eot_id|>",
        [("code_interpreter", {"code": "print(1)"})],
        stop="end_of_turn",
    ),
]

# llama.cpp's Llama 3.x test vectors and the HF template's `name.call(...)` rendering.
CASES += [
    case(
        "llamacpp_python_alias",
        "<|python_tag|>python.call(code=\"print('hey')\")",
        [("code_interpreter", {"code": "print('hey')"})],
    ),
    case(
        "llamacpp_python_tool",
        "<|python_tag|>python.call(code=\"print('hey')\")",
        [("python", {"code": "print('hey')"})],
        tools=["python"],
    ),
    case(
        "llamacpp_code_interpreter_call",
        "<|python_tag|>code_interpreter.call(code=\"print('hey')\")",
        [("code_interpreter", {"code": "print('hey')"})],
        tools=TOOLS,
    ),
    case(
        "llamacpp_json_special_function",
        '{"name": "special_function", "parameters": {"arg1": 1}}',
        [("special_function", {"arg1": 1})],
        tools=["special_function"],
    ),
    case(
        "custom_dotcall_offered",
        '<|python_tag|> image_generator.call(prompt = "A cat wearing a hat")',
        [("image_generator", {"prompt": "A cat wearing a hat"})],
        tools=["image_generator"],
    ),
    case(
        "custom_dotcall_positional",
        '<|python_tag|>image_generator.call("A cat")',
        tools=["image_generator"],
        malformed=1,
    ),
    case(
        "web_search_alias",
        '<|python_tag|>web_search.call(query="llamas")',
        [("brave_search", {"query": "llamas"})],
        tools=TOOLS,
    ),
]

# Python-list calls as other runtimes' tests write them (vLLM's pythonic parser, Llama 3.2).
CASES += [
    case(
        "vllm_register_user",
        "[register_user(name='John Doe', age=37, address={'city': 'San Francisco', 'state': 'CA'}, role=None, passed_test=True, aliases=['John', 'Johnny'])]",
        [
            (
                "register_user",
                {
                    "name": "John Doe",
                    "age": 37,
                    "address": {"city": "San Francisco", "state": "CA"},
                    "role": None,
                    "passed_test": True,
                    "aliases": ["John", "Johnny"],
                },
            )
        ],
    ),
    case(
        "vllm_escaped_strings",
        "[get_weather(city='Martha\\'s Vineyard', metric='\\\"cool units\\\"')]",
        [("get_weather", {"city": "Martha's Vineyard", "metric": '"cool units"'})],
    ),
    case(
        "vllm_empty_list_arg",
        "[do_something_cool(steps=[])]",
        [("do_something_cool", {"steps": []})],
    ),
    case(
        "vllm_parallel",
        "[get_weather(city='San Francisco', metric='celsius'), register_user(name='Jane', age=3)]",
        [
            ("get_weather", {"city": "San Francisco", "metric": "celsius"}),
            ("register_user", {"name": "Jane", "age": 3}),
        ],
    ),
    case(
        "pylist_then_prose_same_line",
        '[get_weather(city="SF")] Let me know if you need more.',
        [("get_weather", {"city": "SF"})],
        content="Let me know if you need more.",
    ),
    case(
        "json_unquoted_keys",
        '{name: "get_weather", parameters: {city: "Paris"}}',
        [("get_weather", W)],
    ),
    case(
        "json_schema_echo_args",
        '{"name": "get_weather", "parameters": {"city": {"type": "string", "value": "Paris"}}}',
        [("get_weather", {"city": {"type": "string", "value": "Paris"}})],
    ),
    case(
        "tagged_bare_call",
        '<|python_tag|>get_weather(city="Paris")<|eom_id|>',
        [("get_weather", W)],
        tools=TOOLS,
    ),
    case(
        "json_calls_then_prose_on_next_lines",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}\n{"name": "get_time", "parameters": {"tz": "CET"}}\n\nI asked both tools.',
        [("get_weather", W), ("get_time", {"tz": "CET"})],
        content="I asked both tools.",
    ),
]
