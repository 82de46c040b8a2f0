"""How much a preview namespace may use: the ResourceQuota and LimitRange figures (SPEC 2).

The quota is recomputed on every deploy from the enabled databases, so enabling
one in `k8s-ee.yaml` grows the namespace's budget and disabling it shrinks it.

Rounding: the limits are multiplied by 1.15 and rounded *down* to a whole
millicore / mebibyte, in integer arithmetic (`value * 115 // 100`), as the first
edition's shell did (`$((x * 115 / 100))`). That is what the SPEC's worked
examples need: app only, memory limits (512 + 512) * 1.15 = 1177.6 -> 1177Mi
(rounding to nearest would give 1178Mi); app + postgresql, (512 + 512 + 512) *
1.15 = 1766.4 -> 1766Mi. Integer arithmetic also keeps float error out of it:
1100 * 1.15 is 1264.9999999999998 as a float, but 1100 * 115 // 100 is 1265.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cost:
    """What one part of the environment adds to the quota."""

    requests_cpu_m: int
    limits_cpu_m: int
    requests_memory_mi: int
    limits_memory_mi: int
    storage_gi: int
    pvcs: int
    pods: int
    services: int


# The app alone. Its 5 pods cover the app's pod, a second one during a rolling
# update, and the occasional job or debug pod; its 3 services, the app's and two spare.
BASE = Cost(
    requests_cpu_m=100,
    limits_cpu_m=300,
    requests_memory_mi=256,
    limits_memory_mi=512,
    storage_gi=1,
    pvcs=1,
    pods=5,
    services=3,
)

DATABASE_COSTS: dict[str, Cost] = {
    # One instance plus the initdb job's pod; services -rw, -ro and -r.
    "postgresql": Cost(250, 500, 256, 512, storage_gi=2, pvcs=1, pods=2, services=3),
    # mongod + agent; data and logs volumes.
    "mongodb": Cost(500, 1000, 320, 640, storage_gi=3, pvcs=2, pods=2, services=1),
    "redis": Cost(100, 200, 64, 128, storage_gi=0, pvcs=0, pods=1, services=1),
    # minio + the operator's sidecar; services for the S3 API and the console.
    "minio": Cost(200, 1000, 384, 1024, storage_gi=2, pvcs=1, pods=2, services=2),
    "mariadb": Cost(150, 300, 128, 256, storage_gi=2, pvcs=1, pods=1, services=1),
}

# Room for a second app pod while a rolling update runs.
HEADROOM_REQUESTS_CPU_M = 100
HEADROOM_REQUESTS_MEMORY_MI = 256
HEADROOM_LIMITS_CPU_M = 300
HEADROOM_LIMITS_MEMORY_MI = 512
# Limits are multiplied by LIMITS_FACTOR_PERCENT / 100, rounded down.
LIMITS_FACTOR_PERCENT = 115

CONFIGMAPS = 15
SECRETS = 25
REPLICATIONCONTROLLERS = 5

# LimitRange `pr-limits`, per container, per pod and per PVC.
CONTAINER_DEFAULT_CPU = "500m"
CONTAINER_DEFAULT_MEMORY = "512Mi"
CONTAINER_DEFAULT_REQUEST_CPU = "100m"
CONTAINER_DEFAULT_REQUEST_MEMORY = "128Mi"
CONTAINER_MAX_CPU = "1"
CONTAINER_MAX_MEMORY = "1Gi"
CONTAINER_MIN_CPU = "10m"
CONTAINER_MIN_MEMORY = "32Mi"
POD_MAX_CPU = "2"
POD_MAX_MEMORY = "2Gi"
PVC_MIN_STORAGE = "100Mi"
PVC_MAX_STORAGE = "5Gi"


@dataclass(frozen=True, slots=True)
class QuotaFigures:
    requests_cpu_m: int
    requests_memory_mi: int
    limits_cpu_m: int
    limits_memory_mi: int
    storage_gi: int
    pvcs: int
    pods: int
    services: int
    configmaps: int = CONFIGMAPS
    secrets: int = SECRETS
    replicationcontrollers: int = REPLICATIONCONTROLLERS

    def hard(self) -> dict[str, str]:
        """The `spec.hard` of ResourceQuota `pr-quota`."""
        return {
            "requests.cpu": f"{self.requests_cpu_m}m",
            "requests.memory": f"{self.requests_memory_mi}Mi",
            "limits.cpu": f"{self.limits_cpu_m}m",
            "limits.memory": f"{self.limits_memory_mi}Mi",
            "requests.storage": f"{self.storage_gi}Gi",
            "persistentvolumeclaims": str(self.pvcs),
            "pods": str(self.pods),
            "services": str(self.services),
            "configmaps": str(self.configmaps),
            "secrets": str(self.secrets),
            "replicationcontrollers": str(self.replicationcontrollers),
        }


def compute_quota(databases: Sequence[str]) -> QuotaFigures:
    """The quota for the app plus the named databases (each counted once, whatever the order)."""
    wanted = set(databases)
    unknown = sorted(wanted - DATABASE_COSTS.keys())
    if unknown:
        raise ValueError(f"unknown database(s): {', '.join(unknown)}")
    costs = [BASE, *(cost for name, cost in DATABASE_COSTS.items() if name in wanted)]
    limits_cpu = sum(c.limits_cpu_m for c in costs) + HEADROOM_LIMITS_CPU_M
    limits_memory = sum(c.limits_memory_mi for c in costs) + HEADROOM_LIMITS_MEMORY_MI
    return QuotaFigures(
        requests_cpu_m=sum(c.requests_cpu_m for c in costs) + HEADROOM_REQUESTS_CPU_M,
        requests_memory_mi=sum(c.requests_memory_mi for c in costs) + HEADROOM_REQUESTS_MEMORY_MI,
        limits_cpu_m=limits_cpu * LIMITS_FACTOR_PERCENT // 100,
        limits_memory_mi=limits_memory * LIMITS_FACTOR_PERCENT // 100,
        storage_gi=sum(c.storage_gi for c in costs),
        pvcs=sum(c.pvcs for c in costs),
        pods=sum(c.pods for c in costs),
        services=sum(c.services for c in costs),
    )


# Quantities, as far as this project writes them: CPU as `250m` or whole cores
# (`1`), memory and storage as `<n>Mi|Gi|Ti`.
_CPU = re.compile(r"^([0-9]+)(m?)$")
_BYTES = re.compile(r"^([0-9]+)(Mi|Gi|Ti)$")
_MI_PER_UNIT = {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def cpu_millicores(quantity: str) -> int:
    match = _CPU.fullmatch(quantity)
    if not match:
        raise ValueError(f"not a CPU quantity in millicores or cores: {quantity!r}")
    number, unit = match.groups()
    return int(number) if unit else int(number) * 1000


def mebibytes(quantity: str) -> int:
    match = _BYTES.fullmatch(quantity)
    if not match:
        raise ValueError(f"not a quantity in Mi, Gi or Ti: {quantity!r}")
    number, unit = match.groups()
    return int(number) * _MI_PER_UNIT[unit]
