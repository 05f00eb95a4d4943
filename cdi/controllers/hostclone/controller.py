"""The clone source controller (upstream's clone-controller, host-assisted legacy flow), keyed by target
PVC: observe the target, its source, both worker pods and the source's other users into a frozen
`plan.Observation`; `plan.plan` decides; `_apply` carries it out idempotently. The upload side of the
same clone (the target's upload server pod) is `cdi.controllers.upload`.

Source pods live in the source namespace and cannot be owned by the target, so they carry
`storage.ownerRef=<tgtNs>/<tgt>` (mapped back to the target's key by the pod watch) and the target
carries the `cdi.kubevirt.io/cloneSource` finalizer until they are gone. Progress is scraped from the
source pod's metrics endpoint through the injected `ProgressScraper`, at most every 2 s per target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from cdi.cluster.errors import AlreadyExists, Conflict, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts import upload_protocol as up
from cdi.controllers.hostclone.plan import PROGRESS_INTERVAL, Act, Observation, Plan, plan, same_namespace_only
from cdi.controllers.hostclone.podspec import SourcePodInputs, owner_uid_of, source_pod, source_secret
from cdi.controllers.hostclone.usage import pods_using
from cdi.controllers.meta import annotations_of, meta, name_of, namespace_of, uid_of
from cdi.controllers.placement import workload_placement
from cdi.controllers.progress import ProgressScraper
from cdi.controllers.upload.clonetarget import clone_client_name, clone_source_of
from cdi.controllers.upload.credentials import CDI_NAMESPACE, ensure_ca_keys
from cdi.controllers.upload.podspec import DEFAULT_IMAGE
from cdi.controllers.workerpod import annotate, config_view, delete_quietly
from cdi.pki import issue
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

log = logging.getLogger(__name__)
COMPONENT = "clone-controller"
Authorize = Callable[[Object], "str | None"]


async def _get(cluster: Cluster, kind: str, name: str, namespace: str) -> Object | None:
    try:
        return await cluster.get("v1", kind, name, namespace)
    except NotFound:
        return None


def owner_ref_keys(obj: Object) -> Iterable[Key]:
    """A source pod's target: `storage.ownerRef=<ns>/<name>`."""
    namespace, _, name = annotations_of(obj).get(ann.ANN_OWNER_REF, "").partition("/")
    return [Key(namespace, name)] if namespace and name else []


class CloneSourceReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, scraper: ProgressScraper, *, image: str = DEFAULT_IMAGE,
                 namespace: str = CDI_NAMESPACE, authorize: Authorize = same_namespace_only,
                 events: EventSink | None = None) -> None:
        self._cluster = cluster
        self._clock = clock
        self._events = events or DirectEvents(cluster, clock.now)
        self._scraper = scraper
        self._image = image
        self._cdi_namespace = namespace
        self._authorize = authorize
        self._scraped: dict[Key, float] = {}  # when each target's progress was last scraped (monotonic)

    async def reconcile(self, key: Key) -> Result:
        target = await _get(self._cluster, "PersistentVolumeClaim", key.name, key.namespace)
        if target is None:
            self._scraped.pop(key, None)
            return DONE
        if not serves(target):
            return DONE
        pod_name = cp.source_pod_name(uid_of(target))
        observation = await self._observe(key, target, pod_name)
        decided = plan(observation, pod_name)
        await self._apply(target, observation, decided, pod_name)
        return decided.result

    async def _observe(self, key: Key, target: Object, pod_name: str) -> Observation:
        source_ns, source_name = clone_source_of(target) or ("", "")
        source = await _get(self._cluster, "PersistentVolumeClaim", source_name, source_ns)
        pod = await _get(self._cluster, "Pod", pod_name, source_ns)
        secret = await _get(self._cluster, "Secret", pod_name, source_ns)
        upload_name = annotations_of(target).get(ann.ANN_UPLOAD_POD) or up.upload_resource_name(name_of(target))
        upload_pod = await _get(self._cluster, "Pod", upload_name, key.namespace)
        users: tuple[str, ...] = ()
        if pod is None and source is not None:
            users = pods_using((await self._cluster.list("v1", "Pod", source_ns)).items, source_name)
        return Observation(target, source, pod, upload_pod, secret is not None, users,
                           self._authorize(target), await self._progress(key, pod))

    async def _progress(self, key: Key, pod: Object | None) -> float | None:
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if pod is None or not ip or (pod.get("status") or {}).get("phase") != "Running":
            return None
        now = self._clock.monotonic()
        if key in self._scraped and now - self._scraped[key] < PROGRESS_INTERVAL:
            return None
        self._scraped[key] = now
        return await self._scraper.scrape(str(ip), owner_uid_of(pod))

    async def _apply(self, target: Object, o: Observation, decided: Plan, pod_name: str) -> None:
        source_ns = (clone_source_of(target) or (namespace_of(target), ""))[0]
        if Act.ADD_FINALIZER in decided.acts:
            await self._finalizers(target, add=True)
        if decided.annotations:
            await annotate(self._cluster, target, decided.annotations)
        for type_, reason, message in decided.events:
            await self._events.record(target, type_, reason, message, component=COMPONENT)
        if Act.START_SOURCE in decided.acts:
            await self._start(target, o, pod_name)
        if Act.DELETE_SOURCE_POD in decided.acts:
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, source_ns)
        if Act.DELETE_SECRET in decided.acts:
            await delete_quietly(self._cluster, "v1", "Secret", pod_name, source_ns)
        if Act.DELETE_UPLOAD_POD in decided.acts and o.upload_pod is not None:
            await delete_quietly(self._cluster, "v1", "Pod", name_of(o.upload_pod), namespace_of(target))
        if Act.REMOVE_FINALIZER in decided.acts:
            await self._finalizers(target, add=False)

    async def _start(self, target: Object, o: Observation, pod_name: str) -> None:
        assert o.source is not None and o.upload_pod is not None
        config = await config_view(self._cluster)
        keys = await ensure_ca_keys(self._cluster, self._clock.now(), self._cdi_namespace)
        ca = keys.signer
        notes = annotations_of(target)
        # The source trusts the whole bundle: during a CA rotation the upload server's certificate may come from
        # the CA before or after the one that signs now.
        inputs = SourcePodInputs(
            target=target, source=o.source, pod_name=pod_name, ca_pem=keys.bundle().decode(),
            upload_ip=str((o.upload_pod.get("status") or {}).get("podIP") or ""),
            owner_uid=notes.get(ann.ANN_OWNER_UID) or uid_of(target), image=self._image,
            preallocation=notes.get(ann.ANN_PREALLOCATION_REQUESTED, str(config.preallocation).lower()) == "true",
            resources=config.pod_resources, placement=await workload_placement(self._cluster))
        if not o.secret_exists:
            pair = issue(ca, clone_client_name(target), self._clock.now(), client=True, days=2)
            try:
                await self._cluster.create(source_secret(inputs, pair))
            except AlreadyExists:
                pass
        try:
            await self._cluster.create(source_pod(inputs))
        except AlreadyExists:
            return
        log.info("created clone source pod %s/%s for %s/%s", namespace_of(o.source), pod_name,
                 namespace_of(target), name_of(target))

    async def _finalizers(self, target: Object, *, add: bool) -> None:
        for _ in range(5):
            current = meta(target).get("finalizers") or []
            wanted = [*current, ann.FINALIZER_CLONE_SOURCE] if add else [
                f for f in current if f != ann.FINALIZER_CLONE_SOURCE]
            if wanted == current:
                return
            try:
                await self._cluster.update({**target, "metadata": {**meta(target), "finalizers": wanted}})
                return
            except NotFound:
                return
            except Conflict:
                pass  # read again and retry
            fresh = await _get(self._cluster, "PersistentVolumeClaim", name_of(target), namespace_of(target))
            if fresh is None:
                return
            target = fresh


def controllers(cluster: Cluster, clock: Clock, scraper: ProgressScraper, *, image: str = DEFAULT_IMAGE,
                namespace: str = CDI_NAMESPACE, authorize: Authorize = same_namespace_only,
                events: EventSink | None = None) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_ref_keys, label_selector={ann.LABEL_COMPONENT: ann.Component.CLONE_SOURCE.value})
    reconciler = CloneSourceReconciler(cluster, clock, scraper, image=image, namespace=namespace, authorize=authorize,
                                       events=events)
    return [ControllerSpec("clone-controller", "v1", "PersistentVolumeClaim", reconciler, watches=[pods], workers=2,
                           predicate=serves)]


def serves(target: Object) -> bool:
    """A host-assisted clone's target claim (not the upload-style target of an upload DataVolume)."""
    return clone_source_of(target) is not None and ann.ANN_UPLOAD_REQUEST not in annotations_of(target)
