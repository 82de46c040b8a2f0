"""The Namespace itself, with the labels and annotations SPEC 1 defines."""

from __future__ import annotations

from handlers import naming
from handlers.render.context import Context, Manifest


def namespace(ctx: Context) -> Manifest:
    target = ctx.target
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
            ),
            "annotations": naming.namespace_annotations(
                repository=target.repository, created_at=target.created_at, now=target.now
            ),
        },
    }
