"""The pull request comment: one per change, found again by its marker and edited in place.

Pure: the text is a function of the environment's status. Everything that came
from a payload or a repository (branch names, error messages that quote a
config) is escaped, so it can neither break the Markdown nor inject HTML.
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


def escape(text: str) -> str:
    """Inert in GitHub, GitLab and Bitbucket Markdown: no link, no emphasis, no tag, no table break."""
    text = "".join(_HTML.get(c, c) for c in text)
    text = _MARKDOWN.sub(r"\\\1", text)
    # A newline would end the table cell: keep the text on one line.
    return " ".join(text.split())


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
        rows.append(("Namespace", f"`{escape(status.namespace)}`"))
    if status.head_sha:
        rows.append(("Commit", f"`{escape(status.head_sha[:12])}`"))
    if status.head_ref:
        rows.append(("Branch", escape(status.head_ref)))
    if status.databases and status.state in ("deployed", "deploying", "hibernated"):
        rows.append(("Databases", ", ".join(escape(db) for db in status.databases)))
    if status.state == "deploying" and status.progress:
        # The URL is not shown until the app answers; this is how far it got.
        rows.append(("Progress", escape(status.progress)))
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
    elif status.state == "skipped" and status.note:
        lines += [escape(status.note), ""]
    elif status.state == "hibernated":
        lines += ["Scaled to zero after being idle; its data is kept. Push a commit to wake it.", ""]
    elif status.state == "preserved":
        lines += ["Kept after the change closed, because it is preserved.", ""]
    lines.append("<sub>k8s-ee gateway · this comment is updated in place</sub>")
    return "\n".join(lines)


def _advice(error: str) -> str:
    if error.startswith("k8s-ee.yaml"):
        return "fix `k8s-ee.yaml` as the message says and push a commit; the environment is deployed again."
    if "not ours" in error or "belongs to" in error or "managed" in error:
        return "the namespace is not managed for this repository; ask the platform team."
    return "push a commit to try again; if it keeps failing, the platform team can see the environment's status in the gateway."
