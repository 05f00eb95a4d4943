"""A read-only view of the CDIConfig status that workers need: filesystem overhead per class,
preallocation default, scratch class, pod resources and import proxy; plus, from the spec as upstream's
import controller reads it, the registries to reach without TLS verification. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdi.cluster.protocol import Object
from cdi.controllers.cdiconfig import DEFAULT_OVERHEAD, DEFAULT_POD_RESOURCES


@dataclass(frozen=True)
class ConfigView:
    status: dict[str, Any] = field(default_factory=dict)
    insecure_registry_hosts: tuple[str, ...] = ()  # spec.insecureRegistries (upstream has no status copy)

    @classmethod
    def of(cls, config: Object | None) -> ConfigView:
        spec = (config or {}).get("spec") or {}
        return cls(dict((config or {}).get("status") or {}),
                   tuple(str(host) for host in spec.get("insecureRegistries") or ()))

    def overhead(self, storage_class: str | None) -> Decimal:
        """Upstream: no class means no overhead; an unknown class gets the global value."""
        if not storage_class:
            return Decimal(0)
        fso = self.status.get("filesystemOverhead") or {}
        value = (fso.get("storageClass") or {}).get(storage_class) or fso.get("global") or DEFAULT_OVERHEAD
        return Decimal(str(value))

    @property
    def preallocation(self) -> bool:
        return bool(self.status.get("preallocation", False))

    @property
    def scratch_storage_class(self) -> str | None:
        return self.status.get("scratchSpaceStorageClass") or None

    @property
    def pod_resources(self) -> dict[str, Any]:
        return dict(self.status.get("defaultPodResourceRequirements") or DEFAULT_POD_RESOURCES)

    @property
    def import_proxy(self) -> dict[str, Any]:
        return dict(self.status.get("importProxy") or {})

    @property
    def insecure_registries(self) -> list[str]:
        return list(self.insecure_registry_hosts)
