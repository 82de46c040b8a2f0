"""SPEC 6's allowlist compares owner names in ASCII only."""

from __future__ import annotations

from gateway.allowlist import Allowlist


def test_owner_names_are_compared_in_ascii_only() -> None:
    allowlist = Allowlist.build("allowlist", ["Kube-Team"], ["acme/Web"])
    assert allowlist.refusal("kube-team/app") is None
    assert allowlist.refusal("ACME/web") is None
    # The Kelvin sign lower-cases to `k` in Unicode, never here.
    assert allowlist.refusal("\u212aube-team/app") is not None
    denylist = Allowlist.build("denylist", ["kube-team"], [])
    assert denylist.refusal("\u212aube-team/app") is None
    assert denylist.refusal("KUBE-TEAM/app") is not None
