"""Which kinds the API server serves, from its discovery documents (`/api/v1`, `/apis/<group>/<version>`).

CDI must know whether optional kinds exist (VolumeSnapshot CRDs are absent on many clusters) before it
watches or creates them. Answers are cached per group-version: a served one for good, an absent one
for `negative_ttl` seconds so that CRDs installed later are noticed.
"""

from __future__ import annotations

import time

from cdi.cluster.errors import NotFound
from cdi.kube.paths import group_version_path
from cdi.kube.transport import Transport


class Discovery:
    def __init__(self, transport: Transport, *, negative_ttl: float = 30.0) -> None:
        self._transport = transport
        self._served: dict[str, frozenset[str]] = {}
        self._absent: dict[str, float] = {}
        self._negative_ttl = negative_ttl

    async def serves(self, api_version: str, kind: str) -> bool:
        return kind in await self.kinds(api_version)

    async def kinds(self, api_version: str) -> frozenset[str]:
        if api_version in self._served:
            return self._served[api_version]
        checked = self._absent.get(api_version)
        if checked is not None and time.monotonic() - checked < self._negative_ttl:
            return frozenset()
        try:
            doc = await self._transport.json("GET", group_version_path(api_version))
        except NotFound:
            self._absent[api_version] = time.monotonic()
            return frozenset()
        resources = (doc or {}).get("resources") or []
        kinds = frozenset(str(r.get("kind")) for r in resources if "/" not in r.get("name", ""))
        self._served[api_version] = kinds
        return kinds
