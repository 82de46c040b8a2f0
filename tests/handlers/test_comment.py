"""The pull request comment: content per state, and nothing from a payload can inject Markdown or HTML."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.comment import HEADLINES, MARKER, escape, render_comment
from handlers.status import EnvironmentStatus
from providers.events import Provider

EVIL = "x](http://evil)<img src=x onerror=alert(1)>"


def status(**fields: object) -> EnvironmentStatus:
    values: dict[str, object] = {
        "provider": Provider.GITHUB,
        "repository": "acme/web",
        "number": 42,
        "state": "deployed",
        "namespace": "web-pr-42",
        "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "head_ref": "feature/login",
        "preview_url": "https://web-pr-42.preview.example.com",
        "databases": ["postgresql", "redis"],
        "updated_at": datetime(2026, 11, 27, 3, 4, tzinfo=UTC),
    }
    values.update(fields)
    return EnvironmentStatus(**values)  # type: ignore[arg-type]


def test_deployed_shows_everything_a_reviewer_needs() -> None:
    text = render_comment(
        status(), dashboard_url="https://grafana.example.com/d/ns?var-namespace={namespace}"
    )
    assert text.startswith(MARKER)
    assert HEADLINES["deployed"] in text
    assert "[https://web-pr-42.preview.example.com](https://web-pr-42.preview.example.com)" in text
    # Nothing is escaped inside a code span: a backslash there would show as typed.
    assert "`web-pr-42`" in text
    assert "`0123456789ab`" in text
    assert "feature/login" in text
    assert "postgresql, redis" in text
    assert "2026\\-11\\-27 03:04 UTC" in text or "2026-11-27 03:04 UTC" in text
    assert "grafana" in text


@pytest.mark.parametrize("state", sorted(HEADLINES))
def test_every_state_renders_with_the_marker(state: str) -> None:
    text = render_comment(status(state=state, last_error="boom", note="a draft"))
    assert text.count(MARKER) == 1 and HEADLINES[state] in text
    # The preview link only while it works.
    assert ("](https://web-pr-42" in text) == (state == "deployed")


def test_failed_says_what_and_what_to_do() -> None:
    error = "k8s-ee.yaml: databases.postgresql.storage: must match ^[0-9]+(Mi|Gi|Ti)$ (got '1GB')"
    text = render_comment(status(state="failed", last_error=error))
    assert "What failed" in text and "databases\\.postgresql\\.storage" in text
    assert "fix `k8s-ee.yaml`" in text


def test_a_hostile_branch_name_renders_inert() -> None:
    text = render_comment(status(head_ref=EVIL))
    branch_row = next(line for line in text.splitlines() if line.startswith("| **Branch**"))
    assert "<img" not in branch_row and "](" not in branch_row
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in branch_row
    assert "x\\]\\(http\\:" in branch_row


def test_escape_keeps_text_on_one_line_and_tables_intact() -> None:
    assert escape("a|b\nc") == "a\\|b c"
    assert escape("<script>") == "&lt;script&gt;"
    assert escape("**bold** _it_ `code`") == "\\*\\*bold\\*\\* \\_it\\_ \\`code\\`"


def test_only_gateway_shaped_urls_are_linked() -> None:
    text = render_comment(status(preview_url="javascript:alert(1)"))
    assert "](javascript" not in text
