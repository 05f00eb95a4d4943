"""`KubeCluster`: the `Cluster` protocol against a real API server.

Each verb is one request on the kind's path (`cdi.kube.paths`) through the rate-limited transport:
objects go as dicts and come back as dicts; list items get their `apiVersion`/`kind` back (the API
server leaves them out); writes ask for strict field validation (`fieldValidation=Strict`, as kubectl
does), so a field the schema does not know is refused here exactly as the embedded store refuses it.
Patch types travel as their content types; deletes carry `DeleteOptions`; create-only kinds
(SubjectAccessReview, TokenReview, UploadTokenRequest) return the server's answer. Kinds are resolved
in the same registry the embedded store uses (`cdi.cluster.kinds`), and `served` asks discovery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cdi.cluster.errors import BadRequest, Invalid
from cdi.cluster.kinds import DEFAULT_KINDS, KindRegistry, ResourceKind
from cdi.cluster.protocol import PATCH_CONTENT_TYPES, DeleteOptions, Object, ObjectList, PatchType, WatchEvent
from cdi.kube.config import load_configuration
from cdi.kube.discovery import Discovery
from cdi.kube.paths import collection_path, object_path
from cdi.kube.transport import DEFAULT_BURST, DEFAULT_QPS, Transport
from cdi.kube.watch import KubeWatchStream

STRICT = "Strict"


class KubeCluster:
    """A `Cluster` on a real API server; close it when done."""

    def __init__(self, transport: Transport, *, kinds: KindRegistry = DEFAULT_KINDS,
                 field_validation: str = STRICT) -> None:
        self._transport, self._kinds = transport, kinds
        self._discovery = Discovery(transport)
        self._field_validation = field_validation

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def kinds(self) -> KindRegistry:
        return self._kinds

    async def __aenter__(self) -> KubeCluster:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object:
        served = self._kind(api_version, kind, namespace)
        obj = await self._transport.json("GET", object_path(served, api_version, name, namespace))
        return _typed(obj, api_version, kind)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: Mapping[str, str] | str | None = None, *,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> ObjectList:
        served = self._kind(api_version, kind, namespace or None)
        query = {"labelSelector": _selector(label_selector), "fieldSelector": field_selector or None,
                 "limit": limit or None, "continue": continue_token or None}
        doc = await self._transport.json("GET", collection_path(served, api_version, namespace or None), query=query)
        meta = doc.get("metadata") or {}
        items = [_typed(item, api_version, kind) for item in doc.get("items") or []]
        return ObjectList(items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or ""))

    def watch(self, api_version: str, kind: str, *, resource_version: str, namespace: str | None = None,
              label_selector: Mapping[str, str] | str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        served = self._kind(api_version, kind, namespace or None)
        query = {"labelSelector": _selector(label_selector), "fieldSelector": field_selector or None}
        return KubeWatchStream(self._transport, collection_path(served, api_version, namespace or None), query,
                               resource_version=resource_version, api_version=api_version, kind=kind,
                               bookmarks=allow_bookmarks)

    async def create(self, obj: Object, *, field_manager: str | None = None) -> Object:
        api_version, kind, _, namespace = _identity(obj)
        served = self._kind(api_version, kind, namespace)
        query = {} if served.create_only else self._write_query(field_manager)
        created = await self._transport.json("POST", collection_path(served, api_version, namespace),
                                             query=query, body=obj)
        return _typed(created, api_version, kind)

    async def update(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._put(obj, "", field_manager)

    async def update_status(self, obj: Object, *, field_manager: str | None = None) -> Object:
        return await self._put(obj, "status", field_manager)

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: PatchType = "merge", field_manager: str | None = None,
                    force: bool = False) -> Object:
        return await self._patch(api_version, kind, name, patch, namespace, "", patch_type, field_manager, force)

    async def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                           *, patch_type: PatchType = "merge", field_manager: str | None = None,
                           force: bool = False) -> Object:
        return await self._patch(api_version, kind, name, patch, namespace, "status", patch_type, field_manager,
                                 force)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     options: DeleteOptions | None = None) -> None:
        served = self._kind(api_version, kind, namespace)
        options = options or DeleteOptions()
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": options.propagation}
        if options.grace_period_seconds is not None:
            body["gracePeriodSeconds"] = options.grace_period_seconds
        preconditions = {k: v for k, v in (("uid", options.uid), ("resourceVersion", options.resource_version))
                         if v is not None}
        if preconditions:
            body["preconditions"] = preconditions
        await self._transport.json("DELETE", object_path(served, api_version, name, namespace), body=body)

    async def pod_logs(self, name: str, namespace: str, *, container: str | None = None, previous: bool = False,
                       tail_lines: int | None = None) -> str:
        served = self._kind("v1", "Pod", namespace)
        query = {"container": container, "previous": previous or None, "tailLines": tail_lines}
        return await self._transport.text(object_path(served, "v1", name, namespace, "log"), query=query)

    async def served(self, api_version: str, kind: str) -> bool:
        return await self._discovery.serves(api_version, kind)

    async def _put(self, obj: Object, subresource: str, field_manager: str | None) -> Object:
        api_version, kind, name, namespace = _identity(obj)
        served = self._kind(api_version, kind, namespace)
        written = await self._transport.json("PUT", object_path(served, api_version, name, namespace, subresource),
                                             query=self._write_query(field_manager), body=obj)
        return _typed(written, api_version, kind)

    async def _patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None,
                     subresource: str, patch_type: PatchType, field_manager: str | None, force: bool) -> Object:
        served = self._kind(api_version, kind, namespace)
        if patch_type == "apply" and not field_manager:
            raise BadRequest("PATCH with an apply patch requires a fieldManager")
        query = self._write_query(field_manager)
        if patch_type == "apply" and force:
            query["force"] = True
        written = await self._transport.json("PATCH", object_path(served, api_version, name, namespace, subresource),
                                             query=query, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type])
        return _typed(written, api_version, kind)

    def _write_query(self, field_manager: str | None) -> dict[str, Any]:
        return {"fieldManager": field_manager, "fieldValidation": self._field_validation}

    def _kind(self, api_version: str, kind: str, namespace: str | None) -> ResourceKind:
        served = self._kinds.lookup(api_version, kind)
        if namespace and not served.namespaced:
            raise Invalid(f"{kind} is cluster-scoped: it takes no namespace (got {namespace!r})")
        return served


def _identity(obj: Object) -> tuple[str, str, str, str | None]:
    meta = obj.get("metadata") or {}
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        raise Invalid("an object needs apiVersion and kind")
    return api_version, kind, str(meta.get("name") or ""), meta.get("namespace") or None


def _typed(obj: Object, api_version: str, kind: str) -> Object:
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj


def _selector(selector: Mapping[str, str] | str | None) -> str | None:
    if selector is None or isinstance(selector, str):
        return selector or None
    return ",".join(f"{k}={v}" for k, v in selector.items()) or None


async def connect(kubeconfig: Path | None = None, *, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST,
                  kinds: KindRegistry = DEFAULT_KINDS) -> KubeCluster:
    """A `KubeCluster` for a kubeconfig file (or the in-cluster service account when None)."""
    configuration = await load_configuration(kubeconfig)
    return KubeCluster(Transport(configuration, qps=qps, burst=burst), kinds=kinds)
