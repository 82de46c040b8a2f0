"""What every part of the renderer needs to know about the environment being rendered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers import naming
from handlers.config import RepoConfig
from handlers.render.models import RenderSettings, RenderTarget

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    target: RenderTarget
    config: RepoConfig
    settings: RenderSettings
    passwords: Mapping[str, str]
    namespace: str

    @property
    def project_id(self) -> str:
        return self.config.project_id

    @property
    def app(self) -> str:
        return naming.app_name(self.namespace)

    @property
    def host(self) -> str:
        return naming.preview_host(self.namespace, self.settings.preview_domain)

    @property
    def url(self) -> str:
        return naming.preview_url(self.namespace, self.settings.preview_domain)

    def labels(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**naming.common_labels(self.project_id, self.target.number), **(extra or {})}

    def metadata(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": self.labels(labels)}
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta


def selector(name: str, instance: str) -> dict[str, str]:
    """The labels a workload's pods are selected by; fixed, since selectors are immutable."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}
