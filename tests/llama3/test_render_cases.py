"""Every render case of tests/llama3/data/render_cases.json, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import RenderError
from agent.llama3 import neutralize, render_prompt
from tests.llama3.cases import render_cases, render_kwargs

CASES = render_cases()


def _messages(case: dict[str, Any], *, trust_users: bool) -> list[dict[str, Any]]:
    # Meta encodes user text structurally (special-token text stays plain text), which a string
    # renderer matches byte for byte only when it does not neutralize: so the golden comparison
    # marks user text trusted. What untrusted text gives is pinned separately below.
    return [
        {**m, "trusted": True} if trust_users and m["role"] == "user" else m
        for m in case["messages"]
    ]


@pytest.mark.parametrize(
    "case", [c for c in CASES if "expected_prompt" in c], ids=lambda c: c["id"]
)
def test_render_case(case: dict[str, Any]) -> None:
    prompt = render_prompt(_messages(case, trust_users=True), case["tools"], **render_kwargs(case))
    assert prompt == case["expected_prompt"]


@pytest.mark.parametrize("case", [c for c in CASES if "expected_error" in c], ids=lambda c: c["id"])
def test_render_case_meta_refuses(case: dict[str, Any]) -> None:
    assert "python_list" in case["expected_error"]
    with pytest.raises(RenderError, match=r"python_list.*Llama 3\.1.*'json' or 'function_tag'"):
        render_prompt(case["messages"], case["tools"], **render_kwargs(case))


def test_every_case_is_covered() -> None:
    assert len(CASES) >= 37
    assert all("expected_prompt" in c or "expected_error" in c for c in CASES)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if "expected_prompt" in c and "<|" in str(c["messages"])],
    ids=lambda c: c["id"],
)
def test_untrusted_user_text_is_neutralized(case: dict[str, Any]) -> None:
    """The one case with special-token text in user content: untrusted, it is neutralized,
    and that is the only difference from Meta's bytes."""
    prompt = render_prompt(_messages(case, trust_users=False), case["tools"], **render_kwargs(case))
    user_text = next(m["content"] for m in case["messages"] if "<|" in m["content"])
    assert prompt == case["expected_prompt"].replace(user_text, neutralize(user_text))
    assert prompt != case["expected_prompt"]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if "expected_prompt" in c and "<|" not in str(c["messages"])],
    ids=lambda c: c["id"],
)
def test_untrusted_rendering_is_unchanged_without_special_text(case: dict[str, Any]) -> None:
    prompt = render_prompt(_messages(case, trust_users=False), case["tools"], **render_kwargs(case))
    assert prompt == case["expected_prompt"]
