"""Which Pod Security level each workload's pods meet, and the namespace's enforced level against them.

Pod Security Admission enforces its level on pods only, so a level the operators' pods do not
meet is not refused when the environment is applied: the operator's StatefulSet or Job just
never gets its pods. So the renderer refuses it up front. The levels, from the operators'
code (research notes, "Pod Security Admission"):

- the app, Redis and MariaDB: what we render, restricted (non-root, seccomp RuntimeDefault,
  every capability dropped, no privilege escalation);
- CloudNativePG's instance and job pods: restricted;
- MongoDB Community's pods: baseline (no seccomp profile, capabilities not dropped);
- MinIO's tenant pods: baseline (the pool's security contexts are ours, but whether the
  operator's sidecar and init container take them is not confirmed).
"""

from __future__ import annotations

from handlers.config import Engine
from handlers.render.context import Context
from handlers.render.models import POD_SECURITY_LEVELS, PodSecurityLevel

APP_LEVEL: PodSecurityLevel = "restricted"
DATABASE_LEVELS: dict[Engine, tuple[PodSecurityLevel, str]] = {
    Engine.POSTGRESQL: ("restricted", "CloudNativePG's pods"),
    Engine.MONGODB: ("baseline", "the MongoDB Community operator's pods"),
    Engine.REDIS: ("restricted", "the Redis pod"),
    Engine.MINIO: ("baseline", "the MinIO operator's tenant pods"),
    Engine.MARIADB: ("restricted", "the MariaDB pod"),
}


def strictness(level: PodSecurityLevel) -> int:
    return POD_SECURITY_LEVELS.index(level)


def check_levels(ctx: Context) -> None:
    """ValueError when the enforced level would refuse pods the environment needs."""
    enforced = ctx.settings.pod_security_enforce
    for db in ctx.config.enabled_databases():
        level, whose = DATABASE_LEVELS[db.engine]
        if strictness(enforced) > strictness(level):
            raise ValueError(
                f"K8S_EE_POD_SECURITY_ENFORCE={enforced} would refuse {whose}, which meet {level}: "
                f"{db.name} cannot run here (enforce {level} or lower)"
            )
