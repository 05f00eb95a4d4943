"""Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does.

On Kubernetes several `cdi controller` replicas run; one holds the Lease and reconciles, the others
wait. `LeaseLock.acquire` takes the Lease when it is free or expired (holder gone for longer than
`lease_duration`), writing `holderIdentity`, `acquireTime`, `renewTime` and `leaseTransitions` with an
optimistic-concurrency update, so two candidates never both win. While held, a background task renews
it every `retry_period`; if renewal fails for `renew_deadline` the lock is lost and `lost` is set, so
the manager stops at once rather than reconcile beside a new leader. `release` clears the holder so a
standby takes over without waiting for expiry. Embedded mode keeps the file lock (`cdi.runtime.lock`);
both offer `acquire(stop)`/`release()` to the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cdi.cluster.errors import AlreadyExists, ApiError, Conflict, NotFound
from cdi.cluster.protocol import Cluster, Object

logger = logging.getLogger(__name__)
LEASE_API = "coordination.k8s.io/v1"


class LeaderLock(Protocol):
    """What the manager needs of a lock: wait for it, give it back (`release` may be a coroutine)."""

    async def acquire(self, stop: asyncio.Event | None = None) -> bool: ...

    def release(self) -> Awaitable[None] | None: ...


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def lease_free(lease: Object, identity: str, now: datetime) -> bool:
    """Whether `identity` may take `lease` now: unheld, held by itself, or not renewed in time. Pure."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or now > renewed + timedelta(seconds=duration)


class LeaseLock:
    def __init__(self, cluster: Cluster, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
        self._cluster, self._namespace, self._name, self._identity = cluster, namespace, name, identity
        self._duration, self._deadline, self._period = lease_duration, renew_deadline, retry_period
        self._renewer: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        announced = ""
        while not (stop is not None and stop.is_set()):
            holder = await self._try_take()
            if holder == self._identity:
                logger.info("took the leader lease %s/%s as %s", self._namespace, self._name, self._identity)
                self._renewer = asyncio.create_task(self._renew_forever(), name="lease-renewal")
                return True
            if holder != announced:
                logger.info("waiting for the leader lease %s/%s held by %s", self._namespace, self._name, holder)
                announced = holder
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._period):
                    await (stop.wait() if stop is not None else asyncio.Event().wait())
        return False

    async def release(self) -> None:
        """Stop renewing and clear the holder, so a standby takes over at once."""
        if self._renewer is None:
            return
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        self._renewer = None
        with contextlib.suppress(ApiError):
            lease = await self._cluster.get(LEASE_API, "Lease", self._name, self._namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self._identity:
                lease["spec"]["holderIdentity"] = None
                await self._cluster.update(lease)

    async def _try_take(self) -> str:
        """The holder after one attempt to take or renew the lease ("" when the attempt failed)."""
        now = datetime.now(UTC)
        try:
            lease = await self._cluster.get(LEASE_API, "Lease", self._name, self._namespace)
        except NotFound:
            try:
                await self._cluster.create(self._lease_object(None, now))
                return self._identity
            except (AlreadyExists, Conflict):
                return ""
        except ApiError as e:
            logger.warning("reading the leader lease failed: %s", e.message)
            return ""
        spec = lease.get("spec") or {}
        if not lease_free(lease, self._identity, now):
            return str(spec.get("holderIdentity"))
        try:
            await self._cluster.update(self._lease_object(lease, now))
        except (Conflict, NotFound):
            return ""
        except ApiError as e:
            logger.warning("updating the leader lease failed: %s", e.message)
            return ""
        return self._identity

    def _lease_object(self, existing: Object | None, now: datetime) -> Object:
        spec = dict((existing or {}).get("spec") or {})
        if spec.get("holderIdentity") != self._identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if existing else 0)
        spec.update(holderIdentity=self._identity, leaseDurationSeconds=int(self._duration),
                    renewTime=_micro_time(now))
        metadata = dict((existing or {}).get("metadata") or {"name": self._name, "namespace": self._namespace})
        return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _renew_forever(self) -> None:
        last_renewal = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self._period)
            if await self._try_take() == self._identity:
                last_renewal = asyncio.get_running_loop().time()
            elif asyncio.get_running_loop().time() - last_renewal > self._deadline:
                logger.error("lost the leader lease %s/%s", self._namespace, self._name)
                self.lost.set()
                return
