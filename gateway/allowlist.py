"""SPEC 6: which repositories may have environments.

`allowlist`: only listed organisations (owners, case-insensitive in ASCII only) and listed
`owner/repo` entries pass; an empty allowlist refuses everything.
`denylist`: listed organisations and repositories are refused, the rest pass.
`disabled`: everything passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from providers.text import ascii_lower


@dataclass(frozen=True, slots=True)
class Allowlist:
    mode: Literal["allowlist", "denylist", "disabled"]
    organizations: frozenset[str]
    repositories: frozenset[str]

    @classmethod
    def build(
        cls,
        mode: Literal["allowlist", "denylist", "disabled"],
        organizations: Iterable[str],
        repositories: Iterable[str],
    ) -> Allowlist:
        return cls(
            mode,
            frozenset(ascii_lower(o.strip().strip("/")) for o in organizations),
            frozenset(ascii_lower(r.strip().strip("/")) for r in repositories),
        )

    def refusal(self, repository: str) -> str | None:
        """None if the repository may proceed, else the reason it may not."""
        if self.mode == "disabled":
            return None
        # ASCII-only: a look-alike (the Kelvin sign for `k`) never matches a listed ASCII name.
        name = ascii_lower(repository.strip("/"))
        # GitLab paths have subgroups: the organisation is the top-level group.
        owner = name.split("/", 1)[0]
        listed = owner in self.organizations or name in self.repositories
        if self.mode == "allowlist" and not listed:
            return f"repository {repository} is not in the gateway's allowlist"
        if self.mode == "denylist" and listed:
            return f"repository {repository} is in the gateway's denylist"
        return None
