"""The Namespace itself, with the labels and annotations SPEC 1 defines, and its Pod Security levels."""

from __future__ import annotations

from handlers import naming
from handlers.render.context import Context, Manifest

POD_SECURITY_LABEL = "pod-security.kubernetes.io"


def pod_security_labels(ctx: Context) -> dict[str, str]:
    """Pod Security Admission's labels: the level each mode checks pods against, and its version."""
    settings = ctx.settings
    labels: dict[str, str] = {}
    for mode, level in (
        ("enforce", settings.pod_security_enforce),
        ("warn", settings.pod_security_warn),
        ("audit", settings.pod_security_audit),
    ):
        labels[f"{POD_SECURITY_LABEL}/{mode}"] = level
        labels[f"{POD_SECURITY_LABEL}/{mode}-version"] = settings.pod_security_version
    return labels


def namespace(ctx: Context) -> Manifest:
    target = ctx.target
    # Preserved: `preserve=true` and `k8s-ee/preserve-until`; once not, applying without them
    # removes them (server-side apply drops what its manager no longer sets).
    preserve_labels, preserve_annotations = naming.preserve_metadata(target.preserved_until)
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ctx.namespace,
            "labels": {
                **naming.namespace_labels(
                    project_id=ctx.project_id,
                    number=target.number,
                    branch=target.head_ref,
                    commit_sha=target.head_sha,
                    provider=target.provider,
                ),
                **pod_security_labels(ctx),
                **preserve_labels,
            },
            "annotations": naming.namespace_annotations(
                repository=target.repository, created_at=target.created_at, now=target.now
            )
            | preserve_annotations,
        },
    }
