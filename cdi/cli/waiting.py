"""Waiting for one object to reach a state, driven by the store's watch rather than polling.

`wait_for` lists the object once (a list and a watch with the field selector `metadata.name=NAME`, as
kubectl wait does, so an identity needs list and watch on the kind, not the whole namespace's objects),
checks the predicate on what it finds, then follows the watch from that list's resourceVersion and
re-checks on every change to the object (None once it is gone), relisting if the watch reports
`Gone`. `cdi wait`, `cdi delete --wait` and `cdi logs -f` build their predicates on it, on the
embedded store and on a real API server alike; a timeout raises `WaitTimeout` with kubectl's wording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cdi.cli.errors import CliError, WaitTimeout
from cdi.cluster.errors import Gone
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Cluster, Object

Predicate = Callable[[Object | None], bool]


def _named(items: list[Object], name: str) -> Object | None:
    return next((obj for obj in items if obj["metadata"]["name"] == name), None)


def _by_name(name: str) -> str:
    return f"metadata.name={name}"


async def current_state(cluster: Cluster, kind: ResourceKind, name: str, namespace: str | None) -> Object | None:
    """The object as stored now, or None."""
    listed = await cluster.list(kind.api_version, kind.kind, namespace, field_selector=_by_name(name))
    return _named(listed.items, name)


async def wait_for(cluster: Cluster, kind: ResourceKind, name: str, namespace: str | None,
                   predicate: Predicate, timeout: float | None) -> Object | None:
    """The object's state once `predicate` holds for it (None: it is gone).

    Raises `WaitTimeout` after `timeout` seconds (None: wait as long as it takes).
    """
    listed = await cluster.list(kind.api_version, kind.kind, namespace, field_selector=_by_name(name))
    state = _named(listed.items, name)
    if predicate(state):
        return state
    try:
        async with asyncio.timeout(timeout):
            return await _follow(cluster, kind, name, namespace, predicate, listed.resource_version)
    except TimeoutError:
        raise WaitTimeout(kind.plural, name) from None


async def _follow(cluster: Cluster, kind: ResourceKind, name: str, namespace: str | None, predicate: Predicate,
                  resource_version: str) -> Object | None:
    while True:
        try:
            async for event in cluster.watch(kind.api_version, kind.kind, resource_version=resource_version,
                                             namespace=namespace, field_selector=_by_name(name)):
                if event.object["metadata"]["name"] != name:
                    continue
                state = None if event.type == "DELETED" else event.object
                if predicate(state):
                    return state
            raise CliError(f"the watch on {kind.resource} ended before {name} was ready")
        except Gone:
            listed = await cluster.list(kind.api_version, kind.kind, namespace, field_selector=_by_name(name))
            state, resource_version = _named(listed.items, name), listed.resource_version
            if predicate(state):
                return state
