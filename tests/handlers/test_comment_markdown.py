"""The pull request comment as GitHub renders it (cmark-gfm, GitHub's own Markdown library)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

import cmarkgfm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.comment import code, escape, render_comment
from handlers.status import EnvironmentStatus


def rendered(markdown: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(markdown)


def status(**fields: Any) -> EnvironmentStatus:
    values: dict[str, Any] = {
        "provider": "github",
        "repository": "acme/web",
        "number": 42,
        "state": "deployed",
        "namespace": "web-pr-42",
        "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "head_ref": "feature/login",
        "preview_url": "https://web-pr-42.preview.example.com",
        "updated_at": datetime(2026, 11, 27, 3, 4, tzinfo=UTC),
        **fields,
    }
    return EnvironmentStatus(**values)


def cell(page: str, name: str) -> str:
    """The rendered value cell of the row called `name`."""
    found = re.search(rf"<td><strong>{name}</strong></td>\s*<td>(.*?)</td>", page, re.S)
    assert found, page
    return found.group(1)


def shown(fragment: str) -> str:
    """The text a reader sees in a rendered fragment: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_code_spans_show_names_as_typed() -> None:
    page = rendered(render_comment(status()))
    assert cell(page, "Namespace") == "<code>web-pr-42</code>"
    assert cell(page, "Commit") == "<code>0123456789ab</code>"


@pytest.mark.parametrize(
    "branch",
    ["@acme/platform-team", "fix-for-@octocat", "@all", "x @{557058:1234} y", "feat/@here"],
)
def test_mentions_in_a_branch_name_are_shown_not_notified(branch: str) -> None:
    page = rendered(render_comment(status(head_ref=branch)))
    value = cell(page, "Branch")
    # Reads the same (a zero-width space is all that is added), but no `@name` is left whole.
    assert shown(value).replace("\u200b", "") == branch
    assert not re.search(r"@[A-Za-z0-9{]", shown(value))


def test_mentions_in_an_error_are_not_notified() -> None:
    page = rendered(render_comment(status(state="failed", last_error="ask @acme/ops: quota exceeded")))
    assert "@acme" not in shown(page) and "@\u200bacme/ops" in shown(page)


@settings(max_examples=300)
@given(text=st.text(max_size=60))
def test_escaped_text_renders_as_itself_in_a_table_cell(text: str) -> None:
    page = rendered(f"| a |\n|---|\n| {escape(text)} |\n")
    # One cell, no markup, and the reader sees the text (on one line, mentions broken).
    assert page.count("<td>") == 1
    value = re.search(r"<td>(.*?)</td>", page, re.S)
    assert value is not None
    assert "<" not in value.group(1)
    visible = "".join(c for c in text if c.isprintable() or c.isspace())
    assert shown(value.group(1)).replace("\u200b", "") == " ".join(visible.split())


@settings(max_examples=300)
@given(text=st.text(max_size=40))
def test_code_renders_as_itself_or_falls_back_to_text(text: str) -> None:
    page = rendered(f"| a |\n|---|\n| {code(text)} |\n")
    value = re.search(r"<td>(.*?)</td>", page, re.S)
    assert value is not None and page.count("<td>") == 1
    inner = value.group(1)
    if inner.startswith("<code>"):
        assert inner == f"<code>{html.escape(' '.join(text.split()), quote=False)}</code>"
    else:
        assert "<" not in inner
