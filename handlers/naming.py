"""Names, labels and annotations of a preview environment (SPEC 1).

These are the conventions other tools (and the first edition's environments)
rely on, so they live in one place: the renderer, the worker and the sweeps all
read them from here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from providers.events import Provider

MANAGED_BY = "k8s-ee-gateway"
# What the first edition (GitHub Actions) writes; such namespaces may be adopted.
MANAGED_BY_FIRST_EDITION = "github-actions"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TYPE = "k8s-ee/type"
LABEL_PROJECT_ID = "k8s-ee/project-id"
LABEL_PR_NUMBER = "k8s-ee/pr-number"
LABEL_BRANCH = "k8s-ee/branch"
LABEL_COMMIT_SHA = "k8s-ee/commit-sha"
LABEL_PROVIDER = "k8s-ee/provider"
LABEL_PRESERVE = "preserve"
# On the Secrets whose passwords the gateway generated, so the worker can list
# them all in one request and reuse the passwords on the next deploy.
LABEL_GENERATED_CREDENTIALS = "k8s-ee/generated-credentials"
GENERATED_CREDENTIALS_SELECTOR = f"{LABEL_GENERATED_CREDENTIALS}=true"

TYPE_EPHEMERAL = "ephemeral"
TYPE_NETWORK_POLICY = "network-policy"

ANNOTATION_CREATED_AT = "k8s-ee/created-at"
ANNOTATION_LAST_UPDATED = "k8s-ee/last-updated"
ANNOTATION_REPOSITORY = "k8s-ee/repository"
ANNOTATION_CREATED_BY = "k8s-ee/created-by"
# When the gateway's preservation of the namespace ends (with `preserve=true`; handlers.preserve).
ANNOTATION_PRESERVE_UNTIL = "k8s-ee/preserve-until"
# What the last whole apply into the namespace was (handlers/cluster/digest.py), when it ran,
# and which objects it applied (what a later apply prunes).
ANNOTATION_APPLIED_DIGEST = "k8s-ee/applied-digest"
ANNOTATION_APPLIED_AT = "k8s-ee/applied-at"
ANNOTATION_APPLIED_OBJECTS = "k8s-ee/applied-objects"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_NOT_LABEL_CHARACTER = re.compile(r"[^a-zA-Z0-9._-]")
_DASH_RUN = re.compile(r"-{2,}")
_LEADING_JUNK = re.compile(r"^[^a-zA-Z0-9]+")
_TRAILING_JUNK = re.compile(r"[^a-zA-Z0-9]+$")
LABEL_VALUE_MAX = 63


def namespace_name(project_id: str, number: int) -> str:
    """`{projectId}-pr-{number}`, which must be a DNS-1123 label (63 characters at most)."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValueError(f"change number must be a non-negative integer, got {number!r}")
    name = f"{project_id}-pr-{number}"
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise ValueError(f"namespace {name!r} is not a DNS-1123 label (a-z, 0-9, '-', at most 63 characters)")
    return name


def sanitize_branch(branch: str) -> str:
    """A branch name as a label value (SPEC 1).

    Every character outside `[a-zA-Z0-9._-]` (non-ASCII letters too) becomes `-`,
    runs of `-` collapse, leading non-alphanumerics go, the result is cut to 63
    characters and trailing non-alphanumerics go; nothing left gives `unknown`.
    """
    value = _NOT_LABEL_CHARACTER.sub("-", branch)
    value = _DASH_RUN.sub("-", value)
    value = _LEADING_JUNK.sub("", value)
    value = value[:LABEL_VALUE_MAX]
    value = _TRAILING_JUNK.sub("", value)
    return value or "unknown"


def preview_host(namespace: str, domain: str) -> str:
    return f"{namespace}.{domain}"


def preview_url(namespace: str, domain: str) -> str:
    return f"https://{preview_host(namespace, domain)}"


def app_name(namespace: str) -> str:
    """The app's Deployment, Service and Ingress."""
    return f"{namespace}-app"


def check_app_name(namespace: str) -> None:
    """Refuse a namespace whose app's names Kubernetes would refuse.

    The app's Service is named `{namespace}-app`, and a Service name is a DNS-1035
    label: it starts with a letter and has 63 characters at most (the same name is
    also a label value, which has the same limit).
    """
    name = app_name(namespace)
    if len(name) > LABEL_VALUE_MAX:
        raise ValueError(
            f"the app's Service would be named {name!r}, longer than {LABEL_VALUE_MAX} characters"
        )
    if not _DNS_1035_LABEL.fullmatch(name):
        raise ValueError(
            f"the app's Service would be named {name!r}, but Service names must start with a letter: "
            "choose a projectId that starts with a letter"
        )


def app_config_name(namespace: str) -> str:
    return f"{namespace}-app-config"


def timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC to the second, `2025-01-31T12:00:00Z`, as annotations carry it."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def common_labels(project_id: str, number: int) -> dict[str, str]:
    """On every object the gateway applies."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PROJECT_ID: project_id,
        LABEL_PR_NUMBER: str(number),
    }


def namespace_labels(
    *, project_id: str, number: int, branch: str, commit_sha: str, provider: Provider
) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TYPE: TYPE_EPHEMERAL,
        LABEL_PROJECT_ID: project_id,
        LABEL_PR_NUMBER: str(number),
        LABEL_BRANCH: sanitize_branch(branch),
        # A SHA-1 fits whole; a SHA-256 id (64) loses its last digit to the label limit.
        LABEL_COMMIT_SHA: commit_sha[:LABEL_VALUE_MAX],
        LABEL_PROVIDER: provider.value,
    }


def preserve_metadata(until: datetime | None) -> tuple[dict[str, str], dict[str, str]]:
    """The label and annotation of a namespace the gateway preserves, or none."""
    if until is None:
        return {}, {}
    return {LABEL_PRESERVE: "true"}, {ANNOTATION_PRESERVE_UNTIL: timestamp(until)}


def preserved_by_gateway(labels: dict[str, str], annotations: dict[str, str]) -> bool:
    """`preserve=true` that the gateway set (it came with its preserve-until); one set by hand has none."""
    return labels.get(LABEL_PRESERVE) == "true" and ANNOTATION_PRESERVE_UNTIL in annotations


def namespace_annotations(*, repository: str, created_at: datetime, now: datetime) -> dict[str, str]:
    return {
        ANNOTATION_CREATED_AT: timestamp(created_at),
        ANNOTATION_LAST_UPDATED: timestamp(now),
        ANNOTATION_REPOSITORY: repository,
        ANNOTATION_CREATED_BY: MANAGED_BY,
    }
