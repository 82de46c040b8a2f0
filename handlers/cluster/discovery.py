"""What the API server serves and what it is: asked once per worker, then kept.

- Served kinds. The built-in kinds are always there; an operator's kind is there only when its
  CRD is installed. One GET of `/apis/{group}/{version}` per operator group, the first time an
  environment needs it, answers for every environment after; a kind found missing is asked
  again after `RECHECK_S` (an operator installed since), and one whose apply answers 404 is
  forgotten at once (its CRD went away).
- Facts: the version (`/version`), and the API server's own addresses, the endpoints of the
  `kubernetes` Service in `default`, which the network policy lets the operators' pods reach.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from handlers.cluster import ClusterError, ClusterFacts
from handlers.cluster.resources import ENDPOINTS, Resource
from handlers.cluster.transport import Transport

logger = logging.getLogger("k8s_ee.cluster")

RECHECK_S = 300.0
_VERSION = re.compile(r"^v?1\.([0-9]+)")


@dataclass
class _Listing:
    kinds: frozenset[str]
    at: float


@dataclass
class ServedKinds:
    transport: Transport
    clock: Callable[[], float] = time.monotonic
    _listings: dict[tuple[str, str], _Listing] = field(default_factory=dict)

    async def served(self, resource: Resource) -> bool:
        if resource.operator is None:
            return True
        key = (resource.group, resource.version)
        listing = self._listings.get(key)
        stale = listing is not None and self.clock() - listing.at > RECHECK_S
        if listing is None or (resource.kind not in listing.kinds and stale):
            listing = await self._list(resource)
            self._listings[key] = listing
        return resource.kind in listing.kinds

    def forget(self, resource: Resource) -> None:
        self._listings.pop((resource.group, resource.version), None)

    async def _list(self, resource: Resource) -> _Listing:
        answer = await self.transport.request(
            "GET",
            f"/apis/{resource.group}/{resource.version}",
            action=f"discover {resource.api_version}",
            accept=(404,),
        )
        resources = answer.body.get("resources") if answer.status == 200 else None
        kinds = frozenset(
            str(entry.get("kind"))
            for entry in resources or []
            if isinstance(entry, dict) and "/" not in str(entry.get("name", ""))
        )
        return _Listing(kinds, self.clock())


async def read_facts(transport: Transport) -> ClusterFacts:
    """The version and the API server's addresses; what cannot be read is None (and logged)."""
    version: str | None = None
    addresses: tuple[str, ...] | None = None
    try:
        answer = await transport.request("GET", "/version", action="read the server version")
        match = _VERSION.match(str(answer.body.get("gitVersion") or ""))
        if match:
            version = f"1.{int(match.group(1))}"
    except ClusterError as error:
        logger.warning("cannot read the Kubernetes version: %s", error)
    try:
        answer = await transport.request(
            "GET",
            ENDPOINTS.path("default", "kubernetes"),
            action="read the kubernetes Service's endpoints",
            accept=(404,),
        )
        if answer.status == 200:
            addresses = _addresses(answer.body)
    except ClusterError as error:
        logger.warning("cannot read the API server's addresses: %s", error)
    return ClusterFacts(kubernetes_version=version, api_server_addresses=addresses)


def _addresses(endpoints: dict[str, object]) -> tuple[str, ...] | None:
    found: list[str] = []
    subsets = endpoints.get("subsets")
    for subset in subsets if isinstance(subsets, list) else []:
        for address in (subset.get("addresses") or []) if isinstance(subset, dict) else []:
            ip = address.get("ip") if isinstance(address, dict) else None
            try:
                found.append(str(ipaddress.ip_address(str(ip))))
            except ValueError:
                continue
    return tuple(sorted(set(found))) or None
