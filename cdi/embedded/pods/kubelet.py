"""The kubelet half of the pod runner: run a scheduled pod's containers and report them.

`sync` is kubelet's syncPod for one pod on our node: decide per container (start, restart now, wait
out the back-off, leave terminated), take the finalizer and a pod IP before the first process starts,
set up the volumes, start what should run, then publish the status. `terminate` stops a deleted pod
(SIGTERM, SIGKILL after the grace period), publishes its final status and lets it go. Each started
process gets a watcher task that records its exit (code, signal, reason, termination message) and
asks for the pod to be reconciled again, and a run record (`reattach`) by which `adopt` finds it again
after the runner restarts: containers outlive the runner, and a new one carries on watching them.
The store writes live in `podwrites`; the runner (`runner`) routes pods here.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods import orphans
from cdi.embedded.pods.envvars import EnvError
from cdi.embedded.pods.layout import LayoutError
from cdi.embedded.pods.node import KUBELET
from cdi.embedded.pods.paths import PodPaths
from cdi.embedded.pods.podwrites import PodWriter
from cdi.embedded.pods.processes import (
    START_FAILED_EXIT_CODE,
    ExitStatus,
    Process,
    StartFailed,
    oom_kills,
    termination_message,
)
from cdi.embedded.pods.reattach import RunRecord, find_runs, write_record
from cdi.embedded.pods.records import ContainerRecord, Found, PodRecord, adopt, view
from cdi.embedded.pods.restarts import BackoffPolicy, Decision, decide
from cdi.embedded.pods.spec import ContainerSpec, PodInfo
from cdi.embedded.pods.starter import ContainerStarter
from cdi.embedded.pods.status import CONFIG_ERROR, CONTAINER_CREATING, TERMINAL, ContainerView, Terminated, Waiting
from cdi.embedded.pods.volumes import PROJECTED, VolumeError, prepare_volumes, refresh_projections
from cdi.embedded.semantics import format_time
from cdi.runtime.types import DONE, Clock, Key, Result

log = logging.getLogger("cdi.pods")


class Kubelet:
    def __init__(self, cluster: Cluster, state_dir: Path, starter: ContainerStarter, writer: PodWriter,
                 clock: Clock, backoff: BackoffPolicy, retry_after: float, changed: Callable[[Key], None],
                 refresh_after: float = 60.0) -> None:
        self._cluster = cluster
        self._refresh_after = refresh_after
        self._state_dir = state_dir
        self._starter = starter
        self._clock = clock
        self._backoff = backoff
        self._retry_after = retry_after
        self._changed = changed
        self._writer = writer

    async def adopt(self, pod: PodInfo, obj: Object) -> PodRecord:
        """What an earlier runner left of the pod: its stored status, and the runs it recorded that the
        launcher finds again (still running: watched from now on; ended meanwhile: reported)."""
        paths = PodPaths(self._state_dir, pod.namespace, pod.name)
        found: dict[str, Found] = {}
        specs = {c.name: c for c in pod.containers}
        for name, (run, outcome) in (await find_runs(self._starter.launcher, pod, paths)).items():
            if isinstance(outcome, ExitStatus):
                ended = await self._terminated(specs[name], outcome, run.started_at, run.container_id, paths)
                found[name] = Found(run.container_id, run.started_at, ended)
                if (obj.get("status") or {}).get("phase") not in TERMINAL:
                    log.info("container %s of pod %s/%s (%s) ended with exit code %d while no runner watched it",
                             name, pod.namespace, pod.name, run.container_id, outcome.code)
            else:
                found[name] = Found(run.container_id, run.started_at, outcome)
                log.info("re-attached to container %s of pod %s/%s (%s, running since %s)", name, pod.namespace,
                         pod.name, run.container_id, run.started_at)
        record = adopt(pod, obj.get("status") or {}, self._now(), self._clock.monotonic(), found)
        key = Key(pod.namespace, pod.name)
        for container in pod.containers:
            state = record.container(container.name)
            if state.process is not None:
                state.watcher = asyncio.create_task(self._watch(key, pod.uid, container, state, state.process, paths))
        return record

    async def sync(self, obj: Object, pod: PodInfo, record: PodRecord) -> Result:
        if (obj.get("status") or {}).get("phase") in TERMINAL:
            await self.kill_now(record)
            await self._writer.drop_finalizer(pod)
            return DONE
        paths = PodPaths(self._state_dir, pod.namespace, pod.name)
        if record.lost:
            await asyncio.to_thread(_kill_marked, self._state_dir, pod.uid, record.lost)
            record.lost = set()
        decisions = self._decisions(pod, record)
        to_start = [c for c in pod.containers if not record.container(c.name).live
                    and (c.name not in decisions or decisions[c.name].action == "restart")]
        waits = [d.wait for d in decisions.values() if d.action == "wait"]
        if to_start:
            await asyncio.to_thread(_own_directory, paths, pod.uid, self._state_dir)
            obj = await self._writer.ensure_finalizer(pod)
            obj, pod_ip = await self._writer.ensure_address(obj, pod)
            waits += await self._start(obj, pod, record, to_start, decisions, paths, pod_ip)
        elif record.live() and any(v.kind in PROJECTED for v in pod.volumes):
            # kubelet's periodic sync: Secrets and ConfigMaps a running container mounts follow their objects
            if changed := await refresh_projections(self._cluster, pod, paths):
                log.info("updated volumes %s of pod %s/%s", ", ".join(changed), pod.namespace, pod.name)
            waits.append(self._refresh_after)
        await self._report_backoff(obj, pod, record)
        phase = await self._writer.publish(obj, pod, self._views(pod, record, terminating=False))
        if phase in TERMINAL:
            await self._writer.drop_finalizer(pod)
            return DONE
        if any(d.action == "restart" and record.container(name).problem is None
               for name, d in self._decisions(pod, record).items()):
            waits.append(0.0)  # a start that failed at once: its restart is due now
        return Result(requeue_after=min(waits)) if waits else DONE

    async def terminate(self, obj: Object, pod: PodInfo, record: PodRecord) -> bool:
        """Stop a deleted pod; True once it is stopped, reported and released."""
        live = record.live()
        if live:
            if not record.stopping:
                for container in live:
                    await _process(container).signal(signal.SIGTERM)
                    await self._writer.event(obj, "Normal", "Killing", f"Stopping container {container.name}", KUBELET)
                task = asyncio.create_task(self._escalate(live, pod.grace_seconds))
                record.stopping.add(task)
            return False
        await asyncio.to_thread(_kill_marked, self._state_dir, pod.uid)
        await self._writer.publish(obj, pod, self._views(pod, record, terminating=True), terminating=True)
        await self._writer.drop_finalizer(pod)
        await self._writer.confirm_deletion(pod)
        paths = PodPaths(self._state_dir, pod.namespace, pod.name)
        await asyncio.to_thread(shutil.rmtree, paths.root, True)
        return True

    async def kill_now(self, record: PodRecord) -> None:
        """SIGKILL every process of the pod and wait until each is reaped."""
        for task in record.stopping:
            task.cancel()
        await asyncio.gather(*record.stopping, return_exceptions=True)
        watchers = [c.watcher for c in record.containers.values() if c.watcher is not None]
        await asyncio.gather(*(_process(c).signal(signal.SIGKILL) for c in record.live()))
        if watchers:
            await asyncio.gather(*watchers, return_exceptions=True)

    async def let_go(self, record: PodRecord) -> int:
        """Stop watching the pod's containers and leave them running; how many run."""
        for task in record.stopping:
            task.cancel()
        watchers = [c.watcher for c in record.containers.values() if c.watcher is not None]
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*record.stopping, *watchers, return_exceptions=True)
        return len(record.live())

    def _decisions(self, pod: PodInfo, record: PodRecord) -> dict[str, Decision]:
        now = self._clock.monotonic()
        return {name: decide(pod.restart_policy, c.exited.exit_code, c.finished, c.backoff, now, self._backoff)
                for name, c in record.containers.items() if not c.live and c.exited is not None}

    def _views(self, pod: PodInfo, record: PodRecord, *, terminating: bool) -> list[ContainerView]:
        decisions = self._decisions(pod, record)
        return [view(pod, c, record.container(c.name), decisions.get(c.name), terminating) for c in pod.containers]

    async def _start(self, obj: Object, pod: PodInfo, record: PodRecord, to_start: list[ContainerSpec],
                     decisions: dict[str, Decision], paths: PodPaths, pod_ip: str) -> list[float]:
        try:
            volumes = await prepare_volumes(self._cluster, pod, paths)
        except VolumeError as e:
            for container in to_start:
                record.container(container.name).problem = Waiting(CONTAINER_CREATING, str(e))
            await self._writer.event(obj, "Warning", "FailedMount", str(e), KUBELET)
            return [self._retry_after]
        waits = []
        for container in to_start:
            state = record.container(container.name)
            decision = decisions.get(container.name)
            backoff = decision.backoff if decision is not None else None
            try:
                process = await self._starter.start(pod, container, volumes, pod_ip, paths)
            except (EnvError, LayoutError) as e:
                state.problem = Waiting(CONFIG_ERROR, str(e))
                await self._writer.event(obj, "Warning", "Failed", f"Error: {e}", KUBELET)
                waits.append(self._retry_after)
                continue
            except StartFailed as e:
                now = self._now()
                state.failed_start(Terminated(START_FAILED_EXIT_CODE, "StartError", str(e), now, now),
                                   self._clock.monotonic(), backoff)
                await self._writer.event(obj, "Warning", "Failed", f"Error: {e}", KUBELET)
                continue
            state.begin(process, self._now(), backoff)
            await asyncio.to_thread(write_record, paths.run_record(container.name),
                                    RunRecord(state.container_id, state.started_at, process.handle))
            state.watcher = asyncio.create_task(self._watch(Key(pod.namespace, pod.name), pod.uid, container, state,
                                                            process, paths))
            await self._writer.event(obj, "Normal", "Started", f"Started container {container.name}", KUBELET)
        return waits

    async def _watch(self, key: Key, uid: str, container: ContainerSpec, state: ContainerRecord, process: Process,
                     paths: PodPaths) -> None:
        kills_before = oom_kills()
        ended = await process.wait()
        if ended.signal == signal.SIGKILL:  # its shim may have died with it, leaving the rest of it running
            await asyncio.to_thread(_kill_marked, self._state_dir, uid, {container.name})
        termination = await self._terminated(container, ended, state.started_at, state.container_id, paths,
                                             kills_before, oom_kills())
        if state.process is process:
            state.end(termination, self._clock.monotonic())
        self._changed(key)

    async def _terminated(self, container: ContainerSpec, ended: ExitStatus, started_at: str, container_id: str,
                          paths: PodPaths, kills_before: int | None = None,
                          kills_after: int | None = None) -> Terminated:
        """A run's end as kubelet reports it: reason, and the termination message (file, or log tail)."""
        message = ended.message or await asyncio.to_thread(
            termination_message, paths.termination(container.name), paths.log(container.name), ended.code,
            container.fallback_to_logs_on_error)
        return Terminated(ended.code, _reason(ended, kills_before, kills_after), message, started_at,
                          ended.finished_at or self._now(), container_id, ended.signal)

    async def _escalate(self, containers: list[ContainerRecord], grace: float) -> None:
        watchers = {c.watcher for c in containers if c.watcher is not None}
        if watchers:
            await asyncio.wait(watchers, timeout=grace)
        await asyncio.gather(*(_process(c).signal(signal.SIGKILL) for c in containers if c.live))

    async def _report_backoff(self, obj: Object, pod: PodInfo, record: PodRecord) -> None:
        for name, decision in self._decisions(pod, record).items():
            state = record.container(name)
            if decision.action == "wait" and not state.backoff_reported:
                state.backoff_reported = True
                await self._writer.event(obj, "Warning", "BackOff", f"Back-off restarting failed container {name} in "
                                         f"pod {pod.name}_{pod.namespace}({pod.uid})", KUBELET)

    def _now(self) -> str:
        return format_time(self._clock.now())


def _reason(ended: ExitStatus, kills_before: int | None, kills_after: int | None) -> str:
    """kubelet's reason: OOMKilled when the launcher says so (a container runtime knows) or, when it cannot
    tell, for a SIGKILL while the kernel's OOM killer struck; else Completed/Error."""
    if ended.reason:
        return ended.reason
    if ended.code == 0:
        return "Completed"
    if ended.oom_killed is not None:
        return "OOMKilled" if ended.oom_killed else "Error"
    oom = kills_before is not None and kills_after is not None and kills_after > kills_before
    return "OOMKilled" if ended.signal == signal.SIGKILL and oom else "Error"


def _process(container: ContainerRecord) -> Process:
    assert container.process is not None
    return container.process


def _kill_marked(state_dir: Path, uid: str, containers: set[str] | None = None) -> None:
    orphans.kill_all(orphans.marked_processes(state_dir, {uid}, containers=containers))


def _own_directory(paths: PodPaths, uid: str, state_dir: Path) -> None:
    """Make the pod's directory this pod's: one left by an earlier pod of the same name is cleared."""
    try:
        owner = paths.uid_file.read_text().strip()
    except OSError:
        owner = ""
    if owner == uid:
        return
    if owner:
        _kill_marked(state_dir, owner)
    shutil.rmtree(paths.root, ignore_errors=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.uid_file.write_text(uid + "\n")
