"""The pull request comment: one per change, found again by its marker and edited in place.

Pure: the text is a function of the environment's status. Everything that came
from a payload or a repository (branch names, error messages that quote a
config) is escaped for where it goes, so it can neither break the Markdown, nor
inject HTML, nor ping anyone:

- as text, `escape`: Markdown punctuation backslash-escaped, `<`, `>`, `&`, `"` as
  entities, one line, and every `@` followed by a zero-width space, so `@org/team`
  or `@all` in a branch name is shown, never notified;
- in a code span, `code`: nothing is escaped inside one (a backslash shows as typed),
  so only text with no Markdown, HTML or mention meaning at all goes in a span
  (names and hashes); anything else is shown as escaped text instead.
"""

from __future__ import annotations

import re
from datetime import datetime

from handlers.status import EnvironmentStatus
from providers.hosts.reporting import MARKER

HEADLINES = {
    "queued": "⏳ Preview environment queued",
    "deploying": "🔄 Preview environment deploying",
    "deployed": "🚀 Preview environment deployed",
    "failed": "❌ Preview environment failed",
    "hibernated": "😴 Preview environment hibernated",
    "destroyed": "🧹 Preview environment destroyed",
    "preserved": "📌 Preview environment preserved",
    "skipped": "⏸️ No preview environment",
}

# Markdown's punctuation, backslash-escaped; HTML's three, as entities.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# GitHub, GitLab and Bitbucket all notify on `@name` (and `@org/team`, `@all`); a
# zero-width space after the `@` keeps the text as it reads and notifies no one.
_MENTION = "@\u200b"
# What a code span may hold: characters with no meaning to Markdown, HTML, a table or a mention.
_CODE_SAFE = re.compile(r"[A-Za-z0-9._/=+,-]+")


def escape(text: str) -> str:
    """Inert in GitHub, GitLab and Bitbucket Markdown: no link, no emphasis, no tag, no
    table break, no mention. Control and other invisible characters are dropped."""
    text = "".join(_HTML.get(c, c) for c in text if c.isprintable() or c.isspace())
    text = _MARKDOWN.sub(r"\\\1", text).replace("@", _MENTION)
    # A newline would end the table cell: keep the text on one line.
    return " ".join(text.split())


def code(text: str) -> str:
    """`text` in a code span when it is safe there as typed; otherwise as escaped text."""
    line = " ".join(text.split())
    return f"`{line}`" if _CODE_SAFE.fullmatch(line) else escape(line)


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


def _url(url: str) -> str:
    # Preview URLs are built by the gateway from DNS labels; anything else is not linked.
    if re.fullmatch(r"https://[a-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?", url):
        return f"[{url}]({url})"
    return escape(url)


def dashboard_link(dashboard_url: str, namespace: str) -> str:
    """K8S_EE_DASHBOARD_URL for one environment: `{namespace}` is replaced."""
    return dashboard_url.replace("{namespace}", namespace)


def render_comment(status: EnvironmentStatus, dashboard_url: str | None = None) -> str:
    lines = [MARKER, f"### {HEADLINES[status.state]}", ""]
    rows: list[tuple[str, str]] = []
    if status.state == "deployed" and status.preview_url:
        rows.append(("Preview", _url(status.preview_url)))
    if status.namespace:
        rows.append(("Namespace", code(status.namespace)))
    if status.head_sha:
        rows.append(("Commit", code(status.head_sha[:12])))
    if status.head_ref:
        rows.append(("Branch", escape(status.head_ref)))
    if status.databases and status.state in ("deployed", "deploying", "hibernated"):
        rows.append(("Databases", ", ".join(escape(db) for db in status.databases)))
    if status.state == "deploying" and status.progress:
        # The URL is not shown until the app answers; this is how far it got.
        rows.append(("Progress", escape(status.progress)))
    if status.preserved_until and status.state in ("deployed", "hibernated", "preserved"):
        rows.append(("Preserved until", _time(status.preserved_until)))
    rows.append(("Updated", _time(status.updated_at)))
    if dashboard_url and status.namespace:
        rows.append(("Dashboard", _url(dashboard_link(dashboard_url, status.namespace))))
    lines += ["| | |", "|---|---|", *(f"| **{name}** | {value} |" for name, value in rows), ""]
    if status.warnings and status.state in ("deployed", "deploying"):
        lines += [*(f"⚠️ {escape(warning)}" for warning in status.warnings[:10]), ""]

    if status.state == "failed" and status.last_error:
        lines += [
            "**What failed**",
            "",
            *(f"> {escape(line)}" for line in status.last_error.splitlines()[:20]),
            "",
        ]
        lines += [f"**What to do**: {_advice(status.last_error)}", ""]
    elif status.state in ("skipped", "queued") and status.note:
        lines += [escape(status.note), ""]
    elif status.state == "hibernated":
        lines += ["Scaled to zero after being idle; its data is kept. Push a commit to wake it.", ""]
    elif status.state == "preserved":
        lines += ["Kept after the change closed, because it is preserved.", ""]
    if status.approved_sha and status.note and status.state in ("deploying", "deployed", "hibernated"):
        # A fork's change: which commit was approved, and that a push needs a new approval.
        lines += [escape(status.note), ""]
    lines.append("<sub>k8s-ee gateway · this comment is updated in place</sub>")
    return "\n".join(lines)


def _advice(error: str) -> str:
    if error.startswith("k8s-ee.yaml"):
        return "fix `k8s-ee.yaml` as the message says and push a commit; the environment is deployed again."
    if "not ours" in error or "belongs to" in error or "managed" in error:
        return "the namespace is not managed for this repository; ask the platform team."
    return "push a commit to try again; if it keeps failing, the platform team can see the environment's status in the gateway."
