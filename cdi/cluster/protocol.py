"""The `Cluster` protocol: what controllers, the CLI and the pod runner may ask of a cluster.

Objects are plain Kubernetes documents (`apiVersion`, `kind`, `metadata`, `spec`, `status`) as
dicts; typed models are parsed from them at the edge. Semantics are Kubernetes': every write gets a
new `metadata.resourceVersion`; `update` with a stale resourceVersion raises `Conflict`; `generation`
rises on spec changes only; kinds with a status subresource ignore `status` in `update`/`patch` and
ignore everything but `status` in `update_status`/`patch_status`; `delete` of an object with
finalizers only sets `deletionTimestamp`, and removing the last finalizer then deletes it; deleting
an owner deletes its dependents (ownerReferences, background propagation); `watch` yields every
change after a resourceVersion and raises `Gone` when that version is too old to replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Object = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class ObjectList:
    items: list[Object]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Object


class Cluster(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object: ...

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None) -> ObjectList: ...

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None) -> AsyncIterator[WatchEvent]: ...

    async def create(self, obj: Object) -> Object: ...

    async def update(self, obj: Object) -> Object: ...

    async def update_status(self, obj: Object) -> Object: ...

    async def patch(self, api_version: str, kind: str, name: str, patch: Mapping[str, Any],
                    namespace: str | None = None) -> Object: ...

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Mapping[str, Any],
                           namespace: str | None = None) -> Object: ...

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None: ...
