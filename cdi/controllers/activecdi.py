"""Which CDI resource is in force, for the controllers that read one (the clone planner's
`cloneStrategyOverride`, the worker pods' `spec.workload` in `cdi.controllers.placement`).

Upstream's `GetActiveCDI`: the only CDI resource, else the one not in phase Error (the operator puts
every CR but the one controlling ConfigMap `cdi-config` in Error). Upstream fails the reconcile while more
than one is not in Error; we take the oldest of them, as `upload.credentials.cert_policies` does (the
first CR is the one that claims `cdi-config`), and the operator settles the rest. None when there is no
CDI resource or the cluster does not serve the kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdi.api.cdi import CDIPhase
from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.protocol import Cluster, Object
from cdi.controllers.meta import name_of


def active_cdi(cdis: Sequence[Object]) -> Object | None:
    """The CDI resource in force (see the module docstring)."""
    if len(cdis) <= 1:
        return cdis[0] if cdis else None
    live = [c for c in cdis if (c.get("status") or {}).get("phase") != CDIPhase.ERROR.value]
    live.sort(key=lambda c: (str((c.get("metadata") or {}).get("creationTimestamp") or ""), name_of(c)))
    return live[0] if live else None


async def active_cdi_of(cluster: Cluster) -> Object | None:
    if not await cluster.served(CDI_API_VERSION, "CDI"):
        return None
    return active_cdi((await cluster.list(CDI_API_VERSION, "CDI")).items)
