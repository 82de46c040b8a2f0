"""The waiting page a browser gets while a preview environment wakes: one HTML answer, nothing else.

No external assets (the style and script are inline, and the Content-Security-Policy forbids
anything else). It says what is waking and how far it got, and follows the wake service's
event stream (server-sent events, `/.k8s-ee-wake/events`), so it learns that the app is ready
within a second of it, not at the next refresh. Then it checks, with HEAD requests to its own
address, that the ingress controller sends the host to the app again (the wake service marks
its answers `X-K8s-Ee-Wake`), and reloads onto the app. Without a stream (a proxy that buffers,
the stream limit reached) it polls `/.k8s-ee-wake/status` each second instead; without
JavaScript it refreshes every five seconds.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping

EVENTS_PATH = "/.k8s-ee-wake/events"
STATUS_PATH = "/.k8s-ee-wake/status"
MARK_HEADER = "X-K8s-Ee-Wake"

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
main{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:12px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.35rem;margin:0 0 .25rem}
.what{color:#57606a;margin:0 0 1.25rem;word-break:break-all}
ol{list-style:none;padding:0;margin:0 0 1rem}
li{padding:.3rem 0 .3rem 1.8rem;position:relative;color:#8c959f}
li:before{content:"";position:absolute;left:.35rem;top:.7rem;width:.7rem;height:.7rem;border-radius:50%;
border:2px solid #d0d7de}
li.done{color:#1f2328}li.done:before{background:#1a7f37;border-color:#1a7f37}
li.now{color:#1f2328;font-weight:600}li.now:before{border-color:#0969da;animation:p 1s infinite}
@keyframes p{50%{background:#0969da}}
#progress{color:#57606a;min-height:1.5em}
.failed{color:#cf222e}
small{color:#8c959f}
"""

_SCRIPT = (
    """
(function () {
  var steps = ["asked", "starting", "ready"];
  var started = Date.now();
  var landed = false;
  function el(id) { return document.getElementById(id); }
  function show(s) {
    var at = s.phase === "ready" ? 2 : s.phase === "starting" ? 1 : 0;
    steps.forEach(function (name, i) {
      var li = el("step-" + name);
      li.className = i < at || (i === at && s.phase === "ready") ? "done" : i === at ? "now" : "";
    });
    el("progress").textContent = s.progress || "";
    el("progress").className = s.phase === "failed" ? "failed" : "";
    document.body.setAttribute("data-phase", s.phase);
    if (s.phase === "ready") { land(); }
  }
  function land() {
    if (landed) { return; }
    landed = true;
    el("progress").textContent = "Ready: opening the app";
    (function probe() {
      fetch(location.href, {method: "HEAD", cache: "no-store", credentials: "same-origin"})
        .then(function (r) {
          if (r.headers.get("__MARK__")) { setTimeout(probe, 150); } else { location.reload(); }
        })
        .catch(function () { setTimeout(probe, 250); });
    })();
  }
  function poll() {
    fetch("__STATUS__", {cache: "no-store"}).then(function (r) { return r.json(); })
      .then(function (s) { show(s); if (!landed) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 1000); });
  }
  setInterval(function () {
    el("elapsed").textContent = Math.round((Date.now() - started) / 1000) + " s";
  }, 1000);
  show(JSON.parse(el("state").textContent));
  if (!window.EventSource) { poll(); return; }
  var stream = new EventSource("__EVENTS__");
  stream.addEventListener("state", function (e) { show(JSON.parse(e.data)); });
  stream.onerror = function () { stream.close(); if (!landed) { poll(); } };
})();
""".replace("__MARK__", MARK_HEADER)
    .replace("__STATUS__", STATUS_PATH)
    .replace("__EVENTS__", EVENTS_PATH)
)


def _json_for_script(value: Mapping[str, object]) -> str:
    # Inside <script>: no `<`, `>` or `&` can end the element or start a comment.
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(state: Mapping[str, object], *, title: str, what: str) -> tuple[str, str]:
    """The page and its Content-Security-Policy (one nonce for the inline style and script)."""
    nonce = secrets.token_urlsafe(16)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<title>{html.escape(title)}</title>
<style nonce="{nonce}">{_STYLE}</style></head>
<body data-phase="{html.escape(str(state.get("phase", "")))}"><main>
<h1>{html.escape(title)}</h1>
<p class="what">{html.escape(what)}</p>
<ol>
<li id="step-asked">Wake requested</li>
<li id="step-starting">Starting the app</li>
<li id="step-ready">Ready</li>
</ol>
<p id="progress">{html.escape(str(state.get("progress") or ""))}</p>
<small>Waiting <span id="elapsed">0 s</span> · this page follows along by itself</small>
</main>
<script type="application/json" id="state" nonce="{nonce}">{_json_for_script(state)}</script>
<script nonce="{nonce}">{_SCRIPT}</script>
</body></html>
"""
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page, policy
