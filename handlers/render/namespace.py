"""The Namespace itself, with the labels and annotations SPEC 1 defines."""

from __future__ import annotations

from handlers import naming
from handlers.render.context import Context, Manifest


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
            "labels": naming.namespace_labels(
                project_id=ctx.project_id,
                number=target.number,
                branch=target.head_ref,
                commit_sha=target.head_sha,
                provider=target.provider,
            )
            | preserve_labels,
            "annotations": naming.namespace_annotations(
                repository=target.repository, created_at=target.created_at, now=target.now
            )
            | preserve_annotations,
        },
    }
