"""Whose namespace is it? Checked before anything in an existing namespace is changed or deleted.

Ours: labelled managed-by k8s-ee-gateway and annotated with the same repository. The first
edition's (managed-by github-actions) for the same repository is adopted: the next apply
relabels it. Anything else is refused, and the refusal never names the other repository
(it may be private, and the message is shown on this repository's pull request).
"""

from __future__ import annotations

from collections.abc import Mapping

from handlers import naming
from handlers.cluster import OwnershipError


def same_repository(a: str, b: str) -> bool:
    # GitHub, GitLab and Bitbucket treat repository paths case-insensitively; events of one
    # repository can spell it differently (a rename of the owner's capitalisation, say).
    return a.casefold() == b.casefold()


def check_owner(
    namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str], repository: str
) -> bool:
    """Raise OwnershipError unless `repository` may change `namespace`; True when adopting it."""
    managed_by = labels.get(naming.LABEL_MANAGED_BY)
    owner = annotations.get(naming.ANNOTATION_REPOSITORY)
    if managed_by == naming.MANAGED_BY:
        if owner is None:
            raise OwnershipError(
                f"namespace {namespace} is managed by {naming.MANAGED_BY} but records no repository"
                f" ({naming.ANNOTATION_REPOSITORY}); refusing to change it"
            )
        if not same_repository(owner, repository):
            raise OwnershipError(
                f"namespace {namespace} belongs to another repository; refusing to change it"
            )
        return False
    if managed_by == naming.MANAGED_BY_FIRST_EDITION and owner and same_repository(owner, repository):
        return True
    shown = f" (managed by {managed_by})" if managed_by else ""
    raise OwnershipError(
        f"namespace {namespace} exists and is not managed by {naming.MANAGED_BY}{shown}; refusing to touch it"
    )
