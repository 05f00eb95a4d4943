"""One write as admission sees it: the kind, the operation, the new object and the stored one.

Built by the store (`cdi.embedded.mutations`) for each create, update and patch after the API
server's own shaping (server fields set, status kept or replaced), so handlers see exactly what would
be stored; a mutating handler (`Mutate`) may return a changed object to store instead. `Lookup` lets
a handler read another object in the same transaction (the StorageClass of a
claim being resized), as an admission plugin reads from its informers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Object

Operation = Literal["CREATE", "UPDATE"]

# (group, kind, name, namespace or None) → the stored object, or None.
Lookup = Callable[[str, str, str, str | None], Object | None]

# Mutating admission: the object to store instead of `request.object` (None: store it unchanged), or the
# API server's error. Runs before validation, as Kubernetes runs mutating webhooks before validating ones.
Mutate = Callable[["AdmissionRequest", Lookup], Object | None]


@dataclass(frozen=True)
class AdmissionRequest:
    kind: ResourceKind
    operation: Operation
    object: Object
    old_object: Object | None = None
    subresource: str = ""  # "status" for status writes

    @property
    def name(self) -> str:
        return str(self.object.get("metadata", {}).get("name", ""))

    @property
    def is_status(self) -> bool:
        return self.subresource == "status"
