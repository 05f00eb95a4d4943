"""What "installing CDI" means for the operator: the `Installer` protocol, and the embedded one.

The reconciler (`cdi.operator.reconciler`) asks an installer to `observe` the installation for a CR
(readiness per component, the parts of the CR it had to refuse, stale objects an older version left),
to `install` it, to `delete_stale` objects and to `uninstall` it. Two installers exist:

* `cdi.operator.manifests.ManifestInstaller` (`cdi operator`, on a cluster): everything `cdi manifests` renders,
  customized by the CR, applied with server-side apply; ready when every Deployment is;
* `EmbeddedInstaller` (inside `cdi serve`): the control plane is this process, already running, so there is
  nothing to apply and it is ready as long as the process runs; what the CR configures (`spec.config`, the
  uninstall strategy) is the reconciler's own work and is honoured the same way. The CR's `infra` placement,
  replicas, image pull policy, `customizeComponents` and `certConfig` describe Deployments and Secrets that
  do not exist in embedded mode; `observe` says so as a problem only if the CR sets them, so the user
  learns they are ignored here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cdi.operator import contract as c
from cdi.operator.plan import ObjectRef, Problem
from cdi.runtime.types import Watch

EMBEDDED_COMPONENT = "cdi serve"


@dataclass(frozen=True)
class InstallState:
    components: Mapping[str, bool] = field(default_factory=dict)  # component → ready
    problems: tuple[Problem, ...] = ()
    stale: tuple[ObjectRef, ...] = ()
    renew_at: datetime | None = None  # when the first certificate the installation holds falls due


class Installer(Protocol):
    def watches(self) -> Sequence[Watch]:
        """What else, besides the CR, should wake the reconciler (e.g. the Deployments' status)."""
        ...

    async def observe(self, cr: Mapping[str, Any], version: str) -> InstallState: ...

    async def install(self, cr: Mapping[str, Any], version: str) -> None: ...

    async def delete_stale(self, objects: Sequence[ObjectRef]) -> None: ...

    async def uninstall(self, cr: Mapping[str, Any]) -> None: ...


# The spec fields that shape Deployments and certificates, which the embedded control plane does not have.
# certConfig is not among them: the certificate rotation controller (`cdi.controllers.upload.rotator`) reads it
# in both modes.
_CLUSTER_ONLY = ("infra", "imagePullPolicy", "customizeComponents", "priorityClass")


class EmbeddedInstaller:
    """The embedded control plane as an installation: running, hence ready; nothing to apply or remove."""

    def watches(self) -> Sequence[Watch]:
        return ()

    async def observe(self, cr: Mapping[str, Any], version: str) -> InstallState:
        spec = cr.get("spec") or {}
        ignored = [name for name in _CLUSTER_ONLY if spec.get(name)]
        problems = (Problem(c.CUSTOMIZATION_REFUSED,
                            f"spec.{', spec.'.join(ignored)} shape(s) the cluster install's Deployments and "
                            "certificates; the embedded control plane (cdi serve) has none and ignores them"),) \
            if ignored else ()
        return InstallState({EMBEDDED_COMPONENT: True}, problems)

    async def install(self, cr: Mapping[str, Any], version: str) -> None:
        return None

    async def delete_stale(self, objects: Sequence[ObjectRef]) -> None:
        return None

    async def uninstall(self, cr: Mapping[str, Any]) -> None:
        return None
