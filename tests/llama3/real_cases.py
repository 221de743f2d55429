# ruff: noqa: E501  (literal model outputs read best one case per line)
"""Real Llama 3.1 / 3.2 / 3.3 outputs, and other runtimes' test vectors for them.

Collected from public bug reports (Ollama, vLLM, LiteLLM, Dynamo, LM Studio, ...), from other
runtimes' parser tests (vLLM `llama3_json` and `pythonic`, llama.cpp `test-chat`, llama-stack
`tool_utils`, Ollama `tools_test.go`) and from Meta's own prompt-format documents. Each case
names its source; `raw` is the text the model wrote (special tokens as text; most runtimes
strip the end token, so many have none).

Each case: `raw`, optional `tools` (the names offered; None when the source gives no list),
the expected `calls` in order, optionally the expected `content` (compared after strip, as the
README of `data/` says), the number of `malformed` calls (None: not checked), and `source`.
Where the right answer is debatable the comment says what we chose and why.
"""

from __future__ import annotations

from typing import Any

Calls = list[tuple[str, dict[str, Any]]]


def case(
    id: str,
    raw: str,
    calls: Calls | None = None,
    *,
    source: str,
    tools: list[str] | None = None,
    content: str | None = None,
    malformed: int | None = 0,
) -> dict[str, Any]:
    return {
        "id": id,
        "raw": raw,
        "calls": calls or [],
        "tools": tools,
        "content": content,
        "malformed": malformed,
        "source": source,
    }


VLLM_JSON = "vllm-project/vllm tests/tool_parsers/test_llama3_json_tool_parser.py"
VLLM_PY = "vllm-project/vllm tests/tool_parsers/test_pythonic_tool_parser.py"
STACK = "llama-stack tests: TestMaybeExtractCustomToolCall (llama3/tool_utils)"
LLAMACPP = "llama.cpp Llama 3.1 parser tests, as ported in wrmsr/omlish ommlx/.../test_llama31.py"
OLLAMA = "ollama/ollama tools/tools_test.go (TestParseToolCalls, model llama3.2)"
META32 = "meta-llama/llama-models models/llama3_2/text_prompt_format.md"
SGL = "sgl-project/sglang tests: TestLlama32Detector (llama32_detector)"
SGL_TOOLS = ["get_weather", "search"]

SF = {"format": "fahrenheit", "location": "San Francisco, CA"}
TO = {"format": "celsius", "location": "Toronto, Canada"}
SF_WEATHER = {"city": "San Francisco", "metric": "celsius"}

CASES: list[dict[str, Any]] = [
    # --- JSON calls (Llama 3.1 / 3.3 custom tools) --------------------------------------------
    # vLLM: prose before and after on one line. The prose before ends a sentence ("...:") and
    # the prose after starts a new one, so this is a call with prose around it, not a mention.
    case(
        "vllm_json_prose_both_sides",
        'Here is the result: {"name": "getOpenIncidentsTool", "parameters": {}} Would you like to know more?',
        [("getOpenIncidentsTool", {})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_two_args",
        '{"name": "searchTool", "parameters": {"query": "test query", "limit": 10}}',
        [("searchTool", {"query": "test query", "limit": 10})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_arguments_key",
        '{"name": "searchTool", "arguments": {"query": "test"}}',
        [("searchTool", {"query": "test"})],
        source=VLLM_JSON,
    ),
    # vLLM returns it as content; we agree (no call) and also report it, so the loop can ask
    # the model to write the call again.
    case(
        "vllm_json_invalid_body",
        '{"name": "invalidTool", "parameters": {invalid json}',
        content='{"name": "invalidTool", "parameters": {invalid json}',
        malformed=1,
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_three_semicolon",
        '{"name": "searchTool", "parameters": {"query": "test1"}}; {"name": "getOpenIncidentsTool", "parameters": {}}; {"name": "searchTool", "parameters": {"query": "test2"}}',
        [
            ("searchTool", {"query": "test1"}),
            ("getOpenIncidentsTool", {}),
            ("searchTool", {"query": "test2"}),
        ],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_semicolon_spaced",
        '{"name": "searchTool", "parameters": {"query": "test1"}} ; {"name": "getOpenIncidentsTool", "parameters": {}} ; {"name": "searchTool", "parameters": {"query": "test2"}}',
        [
            ("searchTool", {"query": "test1"}),
            ("getOpenIncidentsTool", {}),
            ("searchTool", {"query": "test2"}),
        ],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_three_with_prose",
        'Here are the results: {"name": "searchTool", "parameters": {"query": "test1"}}; {"name": "getOpenIncidentsTool", "parameters": {}}; {"name": "searchTool", "parameters": {"query": "test2"}} Would you like to know more?',
        [
            ("searchTool", {"query": "test1"}),
            ("getOpenIncidentsTool", {}),
            ("searchTool", {"query": "test2"}),
        ],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_five_levels",
        '{"name": "complexTool", "parameters": {"level1": {"level2": {"level3": {"level4": {"value": "deep"}}}}}}',
        [("complexTool", {"level1": {"level2": {"level3": {"level4": {"value": "deep"}}}}})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_two_one_deep",
        '{"name": "simpleTool", "parameters": {"value": "test"}}; {"name": "complexTool", "parameters": {"config": {"database": {"connection": {"pool": {"size": 10}}}}}}',
        [
            ("simpleTool", {"value": "test"}),
            ("complexTool", {"config": {"database": {"connection": {"pool": {"size": 10}}}}}),
        ],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_brackets_in_strings",
        '{"name": "searchTool", "parameters": {"query": "test {value} [complex]","nested": {"inner": "more {brackets}"}}}',
        [
            (
                "searchTool",
                {"query": "test {value} [complex]", "nested": {"inner": "more {brackets}"}},
            )
        ],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_escaped_quotes_braces",
        '{"name": "parserTool", "parameters": {"text": "He said \\"Hello {world}\\""}}',
        [("parserTool", {"text": 'He said "Hello {world}"'})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_no_name",
        '{"parameters": {}}',
        content='{"parameters": {}}',
        source=VLLM_JSON,
    ),
    # Debatable: vLLM says "no call" for a name without parameters. When the name is an
    # offered tool, a tool that takes no arguments is being called: we run it with {}.
    case(
        "vllm_json_name_only_offered",
        '{"name": "toolWithoutParams"}',
        [("toolWithoutParams", {})],
        tools=["toolWithoutParams", "searchTool"],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_brace_in_trailing_prose",
        '{"name": "searchTool", "parameters": {"query": "test"}} I used {searchTool} for this.',
        [("searchTool", {"query": "test"})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_args_quoted_after",
        '{"name": "searchTool", "parameters": {"query": "test"}} The arguments I passed were {"query": "test"}',
        [("searchTool", {"query": "test"})],
        source=VLLM_JSON,
    ),
    case(
        "vllm_json_bare_semicolon",
        '{"name": "searchTool", "parameters": {"query": "test1"}};{"name": "getOpenIncidentsTool", "parameters": {}}',
        [("searchTool", {"query": "test1"}), ("getOpenIncidentsTool", {})],
        source=VLLM_JSON + " (streaming separators)",
    ),
    case(
        "vllm_json_semicolon_newline",
        '{"name": "searchTool", "parameters": {"query": "test1"}};\n{"name": "getOpenIncidentsTool", "parameters": {}}',
        [("searchTool", {"query": "test1"}), ("getOpenIncidentsTool", {})],
        source=VLLM_JSON + " (streaming separators)",
    ),
    # Llama 3.2 11B Vision, vLLM llama3_json; stop_reason 128008 (<|eom_id|>). The model nested
    # the call in OpenAI's envelope and closed one brace too few. Repairing would be a guess:
    # it is reported as malformed and never executed.
    case(
        "vllm_11786_envelope_missing_brace",
        '{"type": "function", "function": {"name": "get_current_traffic", "parameters": {"location": "Sydney"}}<|eom_id|>',
        tools=["get_current_weather", "get_current_traffic"],
        malformed=1,
        source="vllm-project/vllm issue 11786 (llama3.2-11b-vision-instruct)",
    ),
    case(
        "ollama_13519_fenced_json",
        '```json\n{"name": "query_web_search", "parameters": {"query": "install ollama models"}}\n```',
        [("query_web_search", {"query": "install ollama models"})],
        tools=["query_web_search"],
        source="ollama/ollama issue 13519 (llama3.2:3b)",
    ),
    case(
        "rapidmlx_700_unicode_query",
        '{"name": "web_search", "parameters": {"query": "你好"}}',
        [("web_search", {"query": "你好"})],
        tools=["web_search"],
        source="raullenchai/Rapid-MLX issue 700 (Meta-Llama-3.1-8B-Instruct-4bit)",
    ),
    case(
        "litellm_7209_type_function",
        '{"type": "function", "name": "get_current_weather", "parameters": {"location": "Boston, MA", "unit": "fahrenheit"}}',
        [("get_current_weather", {"location": "Boston, MA", "unit": "fahrenheit"})],
        tools=["get_current_weather"],
        source="BerriAI/litellm issue 7209 (fireworks llama-v3p3-70b-instruct)",
    ),
    # The request offered no tools at all, yet Llama 3.3 answered "Hello, how are you?" with
    # a call shape. No tool of that name exists, so nothing runs; but the completion is exactly
    # a call, so it is reported (the loop tells the model there are no tools, and it answers)
    # rather than handed to the user as the answer.
    case(
        "dynamo_3960_no_tools_offered",
        '{"name": "respond_to_greeting", "parameters": {"greeting": "Hello, how are you?"}}',
        tools=[],
        malformed=1,
        source="ai-dynamo/dynamo issue 3960 (Llama-3.3-70B-Instruct)",
    ),
    # A nested call inside the arguments: still one call to isPrime; checking `n` against the
    # schema is the registry's job, not the parser's.
    case(
        "lmstudio_277_nested_call_in_args",
        '{"type": "function", "name": "isPrime", "parameters": {"n": {"function_name": "add", "args": [12345, 45678]}}}',
        [("isPrime", {"n": {"function_name": "add", "args": [12345, 45678]}})],
        tools=["add", "isPrime"],
        source="lmstudio-ai/lmstudio-js issue 277 (llama-3.3-70b-instruct)",
    ),
    case(
        "lmstudio_277_string_numbers",
        '{"type": "function", "name": "add", "parameters": {"a": "1", "b": "1"}}',
        [("add", {"a": "1", "b": "1"})],
        tools=["add", "isPrime"],
        source="lmstudio-ai/lmstudio-js issue 277 (llama-3.3-70b-instruct)",
    ),
    # llama3.2:3b called a tool that does not exist next to one that does (the tool
    # list is not shown; `find_symbol` stands for the other offered tool). The real one runs,
    # the invented one is reported back to the model.
    case(
        "deadreckoning_30_invented_tool",
        '{"name": "slugify", "parameters": {}}; {"name": "trace_impact", "parameters": {"symbol": "slugify"}}',
        [("trace_impact", {"symbol": "slugify"})],
        tools=["find_symbol", "trace_impact"],
        malformed=1,
        source="atwmarshall/dead-reckoning issue 30 (llama3.2:3b via Ollama)",
    ),
    # The tail of a Llama 3.2 3B completion quoted in llama-server's parse error.
    case(
        "lemonade_1562_empty_params_pair",
        '{"name": "get_fee_recommendation", "parameters": {}}; {"name": "get_fee_estimates", "parameters": {}}',
        [("get_fee_recommendation", {}), ("get_fee_estimates", {})],
        source="lemonade-sdk/lemonade issue 1562 (Llama-3.2-3B-Instruct GGUF)",
    ),
    case(
        "dynamo_9536_tagged_semicolon_arguments",
        '<|python_tag|>{"name":"get_weather","arguments":{"location":"NYC"}};{"name":"get_time","arguments":{"timezone":"EST"}}',
        [("get_weather", {"location": "NYC"}), ("get_time", {"timezone": "EST"})],
        tools=["get_weather", "get_time"],
        source="ai-dynamo/dynamo PR 9536 / issue 8732 (Llama 3.3 70B)",
    ),
    case(
        "rapidmlx_700_greeting_call",
        '{"name": "web_search", "parameters": {"query": "hello"}}<|eom_id|>',
        [("web_search", {"query": "hello"})],
        tools=["web_search"],
        source="raullenchai/Rapid-MLX issue 700 (same output, ASCII query, eom kept)",
    ),
    # --- JSON arrays and data that is no call (Ollama's llama3.2 vectors) --------------------
    # Llama 3.2 writes an array of call objects and forgets the comma between them. Each object
    # is complete and valid, so both calls are meant (Ollama runs both).
    case(
        "ollama_array_missing_comma",
        '[{"name": "get_current_weather", "parameters": {"format":"fahrenheit","location":"San Francisco, CA"}} {"name": "get_current_weather", "parameters": {"format":"celsius","location":"Toronto, Canada"}}]',
        [("get_current_weather", SF), ("get_current_weather", TO)],
        tools=["get_current_weather"],
        source=OLLAMA,
    ),
    case(
        "ollama_single_parameters",
        '{"name": "get_current_weather", "parameters": {"format":"fahrenheit","location":"San Francisco, CA"}}',
        [("get_current_weather", SF)],
        tools=["get_current_weather"],
        source=OLLAMA,
    ),
    case(
        "ollama_array_after_prose",
        'some tokens before [{"name": "get_current_weather", "parameters": {"format":"fahrenheit","location":"San Francisco, CA"}} {"name": "get_current_weather", "parameters": {"format":"celsius","location":"Toronto, Canada"}}]',
        [("get_current_weather", SF), ("get_current_weather", TO)],
        tools=["get_current_weather"],
        source=OLLAMA,
    ),
    case(
        "ollama_user_object_is_data",
        '{ "user": {"id": 12345, "name": "Alice", "preferences": {"theme": "dark", "notifications": true}, "stats": {"points": 987, "level": 42}}}',
        tools=["get_current_weather"],
        content='{ "user": {"id": 12345, "name": "Alice", "preferences": {"theme": "dark", "notifications": true}, "stats": {"points": 987, "level": 42}}}',
        source=OLLAMA,
    ),
    case(
        "ollama_user_array_is_data",
        '[ { "user": {"id": 12345, "name": "Alice", "preferences": {"theme": "dark", "notifications": true}, "stats": {"points": 987, "level": 42}}}]',
        tools=["get_current_weather"],
        content='[ { "user": {"id": 12345, "name": "Alice", "preferences": {"theme": "dark", "notifications": true}, "stats": {"points": 987, "level": 42}}}]',
        source=OLLAMA,
    ),
    case(
        "ollama_options_list_is_data",
        'hi [{"options": "foo"}]',
        content='hi [{"options": "foo"}]',
        source="ollama/ollama tools/tools_test.go (invalid tool call with other tokens)",
    ),
    # --- python list (Llama 3.2 / 3.3) ---------------------------------------------------------
    case(
        "meta32_user_info",
        "[get_user_info(user_id=7890, special='black')]<|eot_id|>",
        [("get_user_info", {"user_id": 7890, "special": "black"})],
        source=META32,
    ),
    case(
        "vllm_py_parameterless",
        "[get_weather()]",
        [("get_weather", {})],
        source=VLLM_PY,
    ),
    case(
        "vllm_py_empty_dict",
        "[do_something_cool(additional_data={})]",
        [("do_something_cool", {"additional_data": {}})],
        source=VLLM_PY,
    ),
    case(
        "vllm_py_three_calls",
        "[get_weather(city='San Francisco', metric='celsius'), get_weather(), do_something_cool(steps=[])]",
        [("get_weather", SF_WEATHER), ("get_weather", {}), ("do_something_cool", {"steps": []})],
        source=VLLM_PY + " (large steps)",
    ),
    # One sibling has a bytes argument (no JSON value): it is reported, the good one runs.
    case(
        "vllm_py_bad_sibling",
        "[bad(x=b'z'), get_weather(city='San Francisco', metric='celsius')]",
        [("get_weather", SF_WEATHER)],
        malformed=1,
        source=VLLM_PY,
    ),
    # 1e999 is infinity, which JSON cannot carry: that call is reported, the sibling runs.
    case(
        "vllm_py_infinite_number",
        "[calc(x=1e999), get_weather(city='San Francisco', metric='celsius')]",
        [("get_weather", SF_WEATHER)],
        malformed=1,
        source=VLLM_PY,
    ),
    # A stray quote breaks the second call; the first is complete and runs.
    case(
        "vllm_py_unparsable_sibling",
        "[get_weather(city='San Francisco', metric='celsius'), f(a='x 'y', b='z')]",
        [("get_weather", SF_WEATHER)],
        malformed=1,
        source=VLLM_PY,
    ),
    case(
        "vllm_py_unrecoverable",
        "[f(a='x 'y' 'z), g(b='p 'q' 'r)]",
        content="[f(a='x 'y' 'z), g(b='p 'q' 'r)]",
        malformed=None,
        source=VLLM_PY,
    ),
    case(
        "vllm_py_mismatched_brackets",
        "[foo(x=1])]",
        content="[foo(x=1])]",
        malformed=1,
        source=VLLM_PY,
    ),
    case(
        "vllm_py_no_call",
        "How can I help you today?",
        content="How can I help you today?",
        source=VLLM_PY,
    ),
    case(
        "stack_two_calls",
        '[search(query="python programming"), get_time(timezone="UTC")]',
        [("search", {"query": "python programming"}), ("get_time", {"timezone": "UTC"})],
        source=STACK,
    ),
    case(
        "stack_value_types",
        '[analyze_data(count=42, enabled=True, ratio=3.14, name="test", options=None)]',
        [
            (
                "analyze_data",
                {"count": 42, "enabled": True, "ratio": 3.14, "name": "test", "options": None},
            )
        ],
        source=STACK,
    ),
    case(
        "stack_nested_config",
        '[advanced_query(config={"filters": {"categories": ["books", "electronics"], "price_range": {"min": 10, "max": 500}}, "sort": {"field": "relevance", "order": "desc"}})]',
        [
            (
                "advanced_query",
                {
                    "config": {
                        "filters": {
                            "categories": ["books", "electronics"],
                            "price_range": {"min": 10, "max": 500},
                        },
                        "sort": {"field": "relevance", "order": "desc"},
                    }
                },
            )
        ],
        source=STACK,
    ),
    # MCP servers name tools with hyphens; Llama 3.2 writes them as they are.
    case(
        "stack_hyphenated_name",
        '[weather-forecast(city="London")]',
        [("weather-forecast", {"city": "London"})],
        source=STACK,
    ),
    case(
        "stack_hyphenated_mcp_tool",
        "[add-note(name='demonote', content='demonstrating Llama Stack and MCP integration')]",
        [
            (
                "add-note",
                {"name": "demonote", "content": "demonstrating Llama Stack and MCP integration"},
            )
        ],
        tools=["add-note"],
        source=STACK,
    ),
    case(
        "stack_escaped_quotes",
        '[search(query="Text with \\"quotes\\" inside")]',
        [("search", {"query": 'Text with "quotes" inside'})],
        source=STACK,
    ),
    case(
        "stack_wrong_outer_brackets",
        '{get_weather(location="San Francisco")}',
        content='{get_weather(location="San Francisco")}',
        source=STACK + " (invalid formats)",
    ),
    case(
        "stack_unclosed_call",
        '[get_weather(location="San Francisco"]',
        content='[get_weather(location="San Francisco"]',
        malformed=None,
        source=STACK + " (invalid formats)",
    ),
    case(
        "stack_braces_for_parens",
        '[get_weather{location="San Francisco"}]',
        content='[get_weather{location="San Francisco"}]',
        source=STACK + " (invalid formats)",
    ),
    # Llama 3.3 70B with `Environment: ipython` writes a bare python call after the tag
    # (arguments as in the example, elided there).
    case(
        "llamamodels_266_tagged_bare_call",
        '<|python_tag|>get_weather(location="San Francisco")<|eom_id|>',
        [("get_weather", {"location": "San Francisco"})],
        tools=["get_weather"],
        source="meta-llama/llama-models issue 266 (Llama 3.3 70B)",
    ),
    # --- <function=...> ------------------------------------------------------------------------
    case(
        "llamamodels_function_tag_unclosed",
        '<function=getWeather>{"location":"New York","date":"2023-08-05"}',
        [("getWeather", {"location": "New York", "date": "2023-08-05"})],
        source="meta-llama/llama-models models/llama3/tests/api/test_tool_utils.py",
    ),
    case(
        "llamamodels_169_function_tag_doc",
        '<function=trending_songs>{"n": 10}</function><|eot_id|>',
        [("trending_songs", {"n": 10})],
        source="meta-llama/llama-models issue 169 (3.1 prompt-format example)",
    ),
    # --- built-ins and `name.call(...)` ----------------------------------------------------------
    case(
        "meta31_wolfram",
        '<|python_tag|>wolfram_alpha.call(query="solve x^3 - 4x^2 + 6x - 24 = 0")<|eom_id|>',
        [("wolfram_alpha", {"query": "solve x^3 - 4x^2 + 6x - 24 = 0"})],
        source="Llama 3.1 prompt-format doc example (quoted in many guides)",
    ),
    case(
        "meta31_brave_lines",
        '<|python_tag|>\nbrave_search.call(query="Menlo Park weather")\n<|eom_id|>',
        [("brave_search", {"query": "Menlo Park weather"})],
        source="Llama 3.1 built-in tool flow as laid out in integration guides (tag, call, eom on lines)",
    ),
    case(
        "llamacpp_custom_call_spaces",
        '<|python_tag|> image_generator.call(prompt = "A cat wearing a hat")',
        [("image_generator", {"prompt": "A cat wearing a hat"})],
        tools=["image_generator"],
        source=LLAMACPP,
    ),
    # `{not_json: true}` is neither JSON nor a Python literal (a dict keyed by a variable):
    # llama.cpp leaves it as text; we report it so the model can fix it.
    case(
        "llamacpp_custom_call_not_a_literal",
        "<|python_tag|> data_analyzer.call(data = {not_json: true})",
        tools=["data_analyzer"],
        malformed=1,
        source=LLAMACPP,
    ),
    case(
        "llamacpp_custom_call_number",
        "<|python_tag|> calculator.call(value = 123.45)",
        [("calculator", {"value": 123.45})],
        tools=["calculator"],
        source=LLAMACPP,
    ),
    case(
        "llamacpp_custom_call_json_bool",
        "<|python_tag|> feature_toggle.call(enabled = true)",
        [("feature_toggle", {"enabled": True})],
        tools=["feature_toggle"],
        source=LLAMACPP,
    ),
    case(
        "llamacpp_custom_call_spaced_out",
        '  <|python_tag|>  my_tool  .  call  (  arg  =  "value"  )  ',
        [("my_tool", {"arg": "value"})],
        tools=["my_tool"],
        source=LLAMACPP,
    ),
    # --- code_interpreter ------------------------------------------------------------------------
    case(
        "tlcl_python_version",
        '<|python_tag|>import sys\n\nprint("Python version: ", sys.version)<|eom_id|>',
        [("code_interpreter", {"code": 'import sys\n\nprint("Python version: ", sys.version)'})],
        source="fairydreaming/tlcl README (Llama 3.1 on llama-server --special)",
    ),
    # Without a stop at <|eom_id|> (llama-server run with --special and no stop string) the
    # token stream goes on with the next header the model invents; the transcript shows it.
    # Everything after the end token is ignored: one code call.
    case(
        "tlcl_eom_then_more_tokens",
        '<|python_tag|>import sys\n\nprint("Python version: ", sys.version)<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\nPython version:  3.12.4 | packaged by Anaconda, Inc. | (main, Jun 18 2024, 15:12:24) [GCC 11.2.0]\n<|eot_id|>',
        [("code_interpreter", {"code": 'import sys\n\nprint("Python version: ", sys.version)'})],
        source="fairydreaming/tlcl README (transcript of the token stream)",
    ),
    case(
        "meta32_is_prime",
        "<|python_tag|>def is_prime(n):\n    if n <= 1:\n        return False\n    if n == 2:\n        return True\n    if n % 2 == 0:\n        return False\n    max_divisor = int(n**0.5) + 1\n    for d in range(3, max_divisor, 2):\n        if n % d == 0:\n            return False\n    return True\n\nprint(is_prime(7))  # Output: True<|eom_id|>",
        [
            (
                "code_interpreter",
                {
                    "code": "def is_prime(n):\n    if n <= 1:\n        return False\n    if n == 2:\n        return True\n    if n % 2 == 0:\n        return False\n    max_divisor = int(n**0.5) + 1\n    for d in range(3, max_divisor, 2):\n        if n % d == 0:\n            return False\n    return True\n\nprint(is_prime(7))  # Output: True"
                },
            )
        ],
        source=META32,
    ),
    # --- SGLang's Llama 3.2 detector vectors ---------------------------------------------------
    case(
        "sglang_prose_then_tag",
        'Let me check. <|python_tag|>{"name": "get_weather", "arguments": {"city": "Tokyo"}}',
        [("get_weather", {"city": "Tokyo"})],
        tools=SGL_TOOLS,
        content="Let me check.",
        source=SGL,
    ),
    case(
        "sglang_tagged_semicolon_pair",
        '<|python_tag|>{"name": "get_weather", "arguments": {"city": "Beijing"}};{"name": "search", "arguments": {"query": "restaurants"}}',
        [("get_weather", {"city": "Beijing"}), ("search", {"query": "restaurants"})],
        tools=SGL_TOOLS,
        source=SGL,
    ),
    case(
        "sglang_arguments_before_name",
        '{"arguments": {"city": "Tokyo"}, "name": "get_weather"}',
        [("get_weather", {"city": "Tokyo"})],
        tools=SGL_TOOLS,
        source=SGL,
    ),
    case(
        "sglang_python_dict_arguments_first",
        "<|python_tag|>{'arguments': {'city': 'Tokyo'}, 'name': 'get_weather'}",
        [("get_weather", {"city": "Tokyo"})],
        tools=SGL_TOOLS,
        source=SGL,
    ),
    case(
        "sglang_empty_object_then_tagged_call",
        '{}<|python_tag|>{"name": "get_weather", "arguments": {"city": "Tokyo"}}',
        [("get_weather", {"city": "Tokyo"})],
        tools=SGL_TOOLS,
        source=SGL,
    ),
    case(
        "sglang_dict_in_sentence",
        '{"a": 1} is a dict',
        tools=SGL_TOOLS,
        content='{"a": 1} is a dict',
        source=SGL,
    ),
    case(
        "sglang_nested_name_is_data",
        '{"nested": {"name": "get_weather"}, "items": [1, 2]}',
        tools=SGL_TOOLS,
        content='{"nested": {"name": "get_weather"}, "items": [1, 2]}',
        source=SGL,
    ),
    case(
        "sglang_json_with_quotes_then_prose",
        "{\"text\": \"你好 — 'key': 'value'\"}  trailing: 'text'\n",
        tools=SGL_TOOLS,
        content="{\"text\": \"你好 — 'key': 'value'\"}  trailing: 'text'",
        source=SGL,
    ),
    case(
        "sglang_python_dict_in_sentence",
        "{'text': '你好', 'number': 1} is a Python dict",
        tools=SGL_TOOLS,
        content="{'text': '你好', 'number': 1} is a Python dict",
        source=SGL,
    ),
    # An unknown name after the tag: never a call; reported so the model learns the tools.
    case(
        "sglang_tagged_unknown_tool",
        '<|python_tag|>{"name": "unknown", "arguments": {"city": "Tokyo"}}',
        tools=SGL_TOOLS,
        malformed=1,
        source=SGL,
    ),
    # SGLang returns it as text. It is exactly a call and nothing else, so we report it like
    # the tagged one: the answer would otherwise be a failed call.
    case(
        "sglang_untagged_unknown_tool",
        '{"name": "unknown", "arguments": {"city": "Tokyo"}}',
        tools=SGL_TOOLS,
        malformed=1,
        source=SGL,
    ),
    # JSON after the tag that is no call, with no code_interpreter offered: nothing runs.
    case(
        "sglang_tagged_plain_object",
        '<|python_tag|>{"a": 1}',
        tools=SGL_TOOLS,
        malformed=None,
        source=SGL,
    ),
    # --- answers, not calls ----------------------------------------------------------------------
    case(
        "tlcl_final_answer",
        "The Python version is 3.12.4.<|eot_id|>",
        content="The Python version is 3.12.4.",
        source="fairydreaming/tlcl README",
    ),
    case(
        "meta32_final_answer",
        "The weather in San Francisco is 25 C.<|eot_id|>",
        content="The weather in San Francisco is 25 C.",
        tools=["get_weather"],
        source=META32,
    ),
    case(
        "ollama_6355_leading_blank_lines",
        " \n\nThe current weather in Toronto is mostly cloudy with a temperature of 22°C (72°F) and a gentle breeze of 15 km/h (9 mph).",
        content="The current weather in Toronto is mostly cloudy with a temperature of 22°C (72°F) and a gentle breeze of 15 km/h (9 mph).",
        tools=["get_current_weather"],
        source="ollama/ollama issue 6355 (llama3.1:8b-instruct-fp16)",
    ),
    case(
        "langchainibm_47_refusal_mentions_functions",
        "The provided functions are insufficient for me to answer the question.",
        content="The provided functions are insufficient for me to answer the question.",
        tools=["multiply"],
        source="langchain-ai/langchain-ibm issue 47 (llama-3.3-70b-instruct)",
    ),
]
