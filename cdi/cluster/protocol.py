"""The `Cluster` protocol: what controllers, the CLI and the pod runner may ask of a cluster.

Objects are plain Kubernetes documents (`apiVersion`, `kind`, `metadata`, `spec`, `status`) as
dicts; typed models are parsed from them at the edge. Semantics are Kubernetes': every write gets a
new `metadata.resourceVersion`; `update` with a stale resourceVersion raises `Conflict`; `generation`
rises on spec changes only; kinds with a status subresource ignore `status` in `update`/`patch` and
ignore everything but `status` in `update_status`/`patch_status`; `delete` of an object with
finalizers only sets `deletionTimestamp`, and removing the last finalizer then deletes it; deleting
an owner deletes its dependents (ownerReferences; background propagation unless `DeleteOptions` ask
for foreground or orphan); `watch` yields every change after a resourceVersion, BOOKMARK events when
asked for, and raises `Gone` when that version is too old to replay.

What a real API server has besides, every backend offers too: patch types (`merge` — RFC 7386,
`json` — RFC 6902, `apply` — server-side apply owned by a field manager), delete preconditions,
list paging (`limit`, `continue_token`) and field selectors, create-only kinds answered in the create
response (SubjectAccessReview, TokenReview, UploadTokenRequest: `create` returns the filled status
and nothing is stored), pod logs, and discovery of the kinds the server serves (VolumeSnapshot CRDs
may be absent). Errors are `cdi.cluster.errors`, each with Kubernetes' code and a retryable flag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Object = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
PatchType = Literal["merge", "json", "apply"]
Propagation = Literal["Background", "Foreground", "Orphan"]

# The content type each patch type travels as over HTTP.
PATCH_CONTENT_TYPES: Mapping[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class ObjectList:
    items: list[Object]
    resource_version: str
    continue_token: str = ""  # non-empty when `limit` cut the list: pass it back for the next page


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Object  # for BOOKMARK: only apiVersion, kind and metadata.resourceVersion


@dataclass(frozen=True)
class DeleteOptions:
    """How to delete: dependents' fate, and preconditions the stored object must meet (`Conflict` if not)."""

    propagation: Propagation = "Background"
    uid: str | None = None
    resource_version: str | None = None
    # Seconds a pod gets to stop; 0 is kubelet's "it has stopped, remove it". The embedded store removes a
    # deleted object as soon as its finalizers are gone, so there it changes nothing.
    grace_period_seconds: int | None = None


class Cluster(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object: ...

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None, *,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> ObjectList: ...

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]: ...

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object: ...

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object: ...

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object: ...

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object: ...

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object: ...

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None: ...

    async def pod_logs(self, name: str, namespace: str, *, container: str | None = None, previous: bool = False,
                       tail_lines: int | None = None) -> str: ...

    async def served(self, api_version: str, kind: str) -> bool: ...
