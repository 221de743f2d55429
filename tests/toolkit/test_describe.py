# ruff: noqa: E501  (tables of exact notes read best one case per line)
"""What the model is shown: `Tool.spec` descriptions carry each parameter's type, allowed values,
default and nested fields, because Meta's templates drop them (every parameter is `"type":
"object"` in the JSON format). `Tool.parameters` stays the exact schema."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from agent.llama3 import render_prompt
from agent.toolkit import Tool, tool
from agent.toolkit._describe import MAX_NOTE, parameter_note, shown_parameters
from tests.toolkit.signatures import SIGNATURES, make

TODAY = dt.date(2025, 1, 5)
USER = [{"role": "user", "content": "Order two pens for Paris."}]


class Line(BaseModel):
    sku: str
    qty: Annotated[int, Field(ge=1)]


@tool
def order(city: str, items: list[Line], unit: Literal["C", "F"] = "C", limit: int = 5) -> str:
    """Place an order.

    Args:
        city: The city's name.
        items: Items to order.
        unit: Temperature unit.
    """
    return ""


ORDER_NOTES = {
    "city": "The city's name. (string)",
    "items": "Items to order. (list of {sku: string, qty: integer at least 1})",
    "unit": "Temperature unit. (one of 'C', 'F', optional, default 'C')",
    "limit": "(integer, optional, default 5)",
}

# Each signature of the snapshot table: the parameter's description as the model reads it.
SIGNATURE_NOTES: list[tuple[str, str, str]] = [
    ("one_str", "text", "(string)"),
    ("defaults", "name", "(string, optional, default 'x')"),
    ("defaults", "on", "(boolean, optional, default true)"),
    ("literal_int", "level", "(one of 1, 2, 3)"),
    ("enum_default", "color", "A primary colour. (one of 'red', 'green', 'blue', optional, default 'green')"),
    ("list_optional", "ids", "((list of integer) | null, optional, default null)"),
    ("tuple_fixed", "pair", "([integer, string])"),
    ("tuple_var", "values", "(list of number)"),
    ("dict_nested", "groups", "({[key: string]: list of integer})"),
    ("set_param", "labels", "(list of string with no duplicates)"),
    ("optional_required", "n", "(integer | null)"),
    ("union_param", "key", "(integer | string)"),
    ("literal_optional", "mode", "(one of 'fast', 'slow', null, optional, default null)"),
    ("model_param", "item", "One line of an order. ({name: string, qty?: integer at least 1 (default 1)})"),
    ("nested_model", "order", "({items: list of {name: string, qty?: integer at least 1 (default 1)}, ship_to: {street: string, city: string, zip?: string | null (default null)}, express?: boolean (default false)})"),
    ("nested_dataclass", "segment", "({start: {x: number, y: number}, end: {x: number, y: number}, label?: string (default '')})"),
    ("recursive_model", "tree", "(Node {value: integer, children?: list of Node (default [])})"),
    ("typed_dict", "movie", "({title: string, year: integer})"),
    ("constrained", "n", "(integer from 1 to 10)"),
    ("constrained", "code", "(string of 2 to 8 characters matching ^[A-Z]+$)"),
    ("constrained", "ratio", "(number greater than 0 and less than 1, optional, default 0.5)"),
    ("field_default", "limit", "How many results. (integer at least 1, optional, default 5)"),
    ("annotated_description", "days", "How many days ahead. (integer, optional, default 1)"),
    ("dates", "at", "((date-time string) | null, optional, default null)"),
    ("any_param", "payload", "(any)"),
    ("bare_containers", "mapping", "(object)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "param", "expected"), SIGNATURE_NOTES)
def test_spec_descriptions_carry_the_type(name: str, param: str, expected: str) -> None:
    made = make(name)
    assert made.spec.parameters["properties"][param]["description"] == expected


def test_spec_keeps_the_schema_and_parameters_stay_exact() -> None:
    assert order.spec.name == "order"
    assert order.spec.description == "Place an order."
    shown = order.spec.parameters["properties"]
    assert {k: v["description"] for k, v in shown.items()} == ORDER_NOTES
    # Apart from the descriptions, the spec is the contract itself.
    for name, prop in shown.items():
        rest = {k: v for k, v in prop.items() if k != "description"}
        assert rest == {
            k: v for k, v in order.parameters["properties"][name].items() if k != "description"
        }
    # `parameters` (the validation contract) is not touched.
    assert "description" not in order.parameters["properties"]["limit"]
    assert order.parameters["properties"]["city"]["description"] == "The city's name."


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_every_spec_is_a_valid_schema_that_never_says_none(name: str) -> None:
    made = make(name)
    Draft202012Validator.check_schema(made.spec.parameters)
    for param, prop in made.spec.parameters["properties"].items():
        original = made.parameters["properties"][param].get("description")
        assert prop["description"].startswith(f"{original} (" if original else "(")
        assert prop["description"].endswith(")")
        assert "None" not in prop["description"]
    # Same keys, same order: the prompt does not change between runs.
    assert list(made.spec.parameters["properties"]) == list(made.parameters["properties"])
    assert json.dumps(made.spec.parameters) == json.dumps(make(name).spec.parameters)


def test_schema_tools_get_notes_too() -> None:
    made = Tool.from_schema(
        name="lookup",
        description="Look a word up.",
        parameters={
            "type": "object",
            "properties": {
                "word": {"type": "string", "description": "The word."},
                "lang": {"type": "string", "enum": ["en", "fr"]},
                "max": {"type": ["integer", "null"], "minimum": 1},
            },
            "required": ["word"],
        },
        function=lambda word, lang="en", max=None: word,
    )
    notes = {k: v["description"] for k, v in made.spec.parameters["properties"].items()}
    assert notes == {
        "word": "The word. (string)",
        "lang": "(one of 'en', 'fr', optional)",
        "max": "((integer at least 1) | null, optional)",
    }
    assert "description" not in made.parameters["properties"]["lang"]


def test_with_options_keeps_the_notes() -> None:
    quick = order.with_options(description="Order fast.")
    assert quick.spec.parameters == order.spec.parameters
    assert quick.spec.description == "Order fast."


NOTES: list[tuple[str, dict[str, Any], bool, str]] = [
    ("string with quotes stays JSON-safe", {"enum": ['say "hi"', "it's"]}, True, r"""one of 'say \"hi\"', 'it\u0027s'"""),
    ("const", {"const": "v1"}, True, "'v1'"),
    ("format", {"type": "string", "format": "email"}, False, "email string, optional"),
    ("max length only", {"type": "string", "maxLength": 1}, True, "string of at most 1 character"),
    ("items bounds", {"type": "array", "items": {"type": "integer"}, "minItems": 1}, True, "list of integer with at least 1 item"),
    ("items range", {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 5}, True, "list of string with 2 to 5 items"),
    ("union in a list", {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, True, "list of (string | null)"),
    ("open tuple", {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, True, "[string, ...: integer]"),
    ("type list", {"type": ["string", "integer"]}, True, "string | integer"),
    ("multiple of", {"type": "integer", "multipleOf": 5, "maximum": 100}, True, "integer at most 100 and a multiple of 5"),
    ("exclusive and inclusive", {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, True, "number greater than 0 and at most 1"),
    ("object with extra values", {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}, True, "{a?: string, [key: string]: integer}"),
    ("allOf folded", {"allOf": [{"type": "integer"}, {"minimum": 0}]}, True, "integer at least 0"),
    ("allOf that overlaps", {"allOf": [{"type": "string"}, {"type": "string", "format": "date"}]}, True, "string and (date string)"),
    ("nothing known", {"description": "free form"}, True, "any"),
    ("list default", {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]}, False, "list of string, optional, default ['a', 'b']"),
    ("object default", {"type": "object", "default": {"k": 1}}, False, "object, optional, default {'k': 1}"),
    ("float default that is whole", {"type": "number", "default": 2.0}, False, "number, optional, default 2"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "schema", "required", "expected"), NOTES, ids=[c[0] for c in NOTES]
)
def test_note(case: str, schema: dict[str, Any], required: bool, expected: str) -> None:
    assert parameter_note(schema, required=required) == expected


TRICKY = [
    'say "hi"',
    "it's",
    "back\\slash",
    "new\nline",
    "tab\t",
    "x" * 200,
    "\\" * 99,
    "'" * 40,
    "é<>&",
]


@pytest.mark.parametrize("value", TRICKY)
def test_notes_stay_valid_inside_a_json_string(value: str) -> None:
    # Meta pastes descriptions between double quotes, unescaped: the note must be a valid body.
    schema = {"type": "string", "enum": [value, "b"], "default": value}
    note = parameter_note(schema, required=False)
    assert note.startswith("one of '")
    decoded = json.loads(f'"{note}"')
    if len(value) < 40:
        assert f"'{value}'" in decoded  # nothing lost when short


def test_long_nested_types_are_cut() -> None:
    wide = {f"field_{i}": {"type": "string"} for i in range(60)}
    schema = {"type": "object", "properties": {"blob": {"type": "object", "properties": wide}}}
    note = shown_parameters(schema)["properties"]["blob"]["description"]
    assert note.startswith("({field_0?: string, field_1?: string")
    assert note.endswith("..., optional)")
    assert len(note) <= MAX_NOTE + len("(, optional)")


def test_deep_recursion_through_defs_terminates() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "required": ["a"],
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        },
    }
    note = shown_parameters(schema)["properties"]["a"]["description"]
    assert note == "(A {b?: B {a?: A}})"
    Draft202012Validator.check_schema(shown_parameters(schema))


# --- what the rendered prompt shows, in Meta's three formats ----------------------------------


def _block(prompt: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"(.*?)" + re.escape(end), prompt, re.DOTALL)
    assert match, prompt
    return match.group(1)


def test_json_format_shows_types_values_and_defaults() -> None:
    prompt = render_prompt(USER, [order], model="llama3.1", tool_format="json", today=TODAY)
    for note in ORDER_NOTES.values():
        assert f'"description": "{note}"' in prompt
    assert '"description": "None"' not in prompt
    # Meta pastes descriptions raw; the notes keep its JSON valid.
    text = _block(
        prompt, "Here is a list of functions in JSON format:\n", "\n\nReturn function calls"
    )
    shown = json.loads(text)["function"]["parameters"]["properties"]
    assert shown == [
        {name: {"type": "object", "description": note}} for name, note in ORDER_NOTES.items()
    ]


def test_json_format_stays_valid_with_quotes_in_allowed_values() -> None:
    @tool
    def greet(style: Literal['say "hi"', "it's"]) -> str:
        return style

    prompt = render_prompt(USER, [greet], model="llama3.1", tool_format="json", today=TODAY)
    text = _block(
        prompt, "Here is a list of functions in JSON format:\n", "\n\nReturn function calls"
    )
    [prop] = json.loads(text)["function"]["parameters"]["properties"]
    assert prop["style"]["description"] == """(one of 'say "hi"', 'it's')"""
    assert r"""(one of 'say \"hi\"', 'it\u0027s')""" in prompt  # as the model reads it


def test_function_tag_format_shows_types_values_and_defaults() -> None:
    prompt = render_prompt(USER, [order], model="llama3.1", tool_format="function_tag", today=TODAY)
    line = _block(prompt, "Use the function 'order' to 'Place an order.':\n", "\n\n")
    # Meta's `tojson` escapes ' as \u0027; decoded, the notes are there word for word.
    assert "one of \\u0027C\\u0027, \\u0027F\\u0027" in line
    params = json.loads(line)["parameters"]
    assert {name: p["description"] for name, p in params.items()} == ORDER_NOTES
    assert params["items"]["param_type"] == "array"


def test_python_list_format_shows_types_values_and_defaults() -> None:
    prompt = render_prompt(USER, [order], model="llama3.2", tool_format="python_list")
    text = _block(
        prompt,
        "Here is a list of functions in JSON format that you can invoke.\n\n",
        "\n\nYou can answer",
    )
    [function] = json.loads(text)
    props = function["parameters"]["properties"]
    assert {name: p["description"] for name, p in props.items()} == ORDER_NOTES
    assert "list of {sku: string, qty: integer at least 1}" in prompt
    assert "one of 'C', 'F', optional, default 'C'" in prompt


def test_a_plain_spec_still_renders_meta_exact() -> None:
    # The renderer is untouched: the same schema given as a plain dict shows Meta's bare text.
    plain = {"name": "order", "description": "Place an order.", "parameters": order.parameters}
    prompt = render_prompt(USER, [plain], model="llama3.1", tool_format="json", today=TODAY)
    assert '"description": "None"' in prompt  # `limit` has no description
    assert "(string)" not in prompt
    assert "one of 'C'" not in prompt
