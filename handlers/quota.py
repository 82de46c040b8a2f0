"""How much a preview namespace may use: the ResourceQuota and LimitRange figures (SPEC 2).

The quota is recomputed on every deploy. Its floor is the first edition's table, from the
enabled databases (`compute_quota`), so SPEC 2's worked examples hold; above the floor it
grows to what the rendered pods need during a rolling update (`Need`, added up by
handlers/render/workloads.py from every container, the operators' pods and the app's surge
pod, with the configured storage), so a bigger app or a bigger volume still fits.

Rounding: the limits are multiplied by 1.15 and rounded *down* to a whole
millicore / mebibyte, in integer arithmetic (`value * 115 // 100`), as the first
edition's shell did (`$((x * 115 / 100))`). That is what the SPEC's worked
examples need: app only, memory limits (512 + 512) * 1.15 = 1177.6 -> 1177Mi
(rounding to nearest would give 1178Mi); app + postgresql, (512 + 512 + 512) *
1.15 = 1766.4 -> 1766Mi. Integer arithmetic also keeps float error out of it:
1100 * 1.15 is 1264.9999999999998 as a float, but 1100 * 115 // 100 is 1265.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from fractions import Fraction


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
class Need:
    """What the rendered objects use at their peak, a rolling update of the app included."""

    requests_cpu_m: int = 0
    requests_memory_mi: int = 0
    limits_cpu_m: int = 0
    limits_memory_mi: int = 0
    storage_mi: int = 0
    pvcs: int = 0
    pods: int = 0
    services: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Need)})


@dataclass(frozen=True, slots=True)
class QuotaFigures:
    requests_cpu_m: int
    requests_memory_mi: int
    limits_cpu_m: int
    limits_memory_mi: int
    storage_mi: int
    pvcs: int
    pods: int
    services: int
    configmaps: int = CONFIGMAPS
    secrets: int = SECRETS
    replicationcontrollers: int = REPLICATIONCONTROLLERS

    def covering(self, need: Need) -> QuotaFigures:
        """These figures, raised wherever `need` is larger: the floor stays, what is rendered fits."""
        return replace(
            self, **{f.name: max(getattr(self, f.name), getattr(need, f.name)) for f in fields(Need)}
        )

    def hard(self) -> dict[str, str]:
        """The `spec.hard` of ResourceQuota `pr-quota`."""
        return {
            "requests.cpu": f"{self.requests_cpu_m}m",
            "requests.memory": f"{self.requests_memory_mi}Mi",
            "limits.cpu": f"{self.limits_cpu_m}m",
            "limits.memory": f"{self.limits_memory_mi}Mi",
            "requests.storage": show_mebibytes(self.storage_mi),
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
        storage_mi=sum(c.storage_gi for c in costs) * 1024,
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


# Any quantity the API accepts (`1.5`, `500M`, `400Mi`, `2e3`): what operators' defaults and a
# live cluster's objects carry. Exact, as the API server compares quantities.
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][0-9]+)?$")
_FACTORS: dict[str | None, Fraction] = {
    None: Fraction(1),
    "m": Fraction(1, 1000),
    **{suffix: Fraction(1000**power) for power, suffix in enumerate("kMGTPE", start=1)},
    **{f"{suffix}i": Fraction(1024**power) for power, suffix in enumerate("KMGTPE", start=1)},
}


def quantity(text: str) -> Fraction:
    """A Kubernetes quantity in its base unit (cores, bytes)."""
    match = _QUANTITY.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number: str = match.group(1)
    suffix: str | None = match.group(2)
    if suffix and suffix[0] in "eE":
        return Fraction(number) * Fraction(10) ** int(suffix[1:])
    return Fraction(number) * _FACTORS[suffix]


def millicores_up(text: str) -> int:
    """A CPU quantity in whole millicores, rounded up (the quota must cover it)."""
    return math.ceil(quantity(text) * 1000)


def mebibytes_up(text: str) -> int:
    """A memory or storage quantity in whole MiB, rounded up."""
    return math.ceil(quantity(text) / (1024 * 1024))


def show_mebibytes(mi: int) -> str:
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"
