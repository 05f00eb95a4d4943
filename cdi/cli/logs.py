"""`cdi logs POD`: print a container's log, as the embedded pod runner or a cluster's node wrote it.

On the embedded store, the runner of `cdi serve` writes each container's output to the file
`cdi.cli.state.pod_log_path` names (and keeps the previous run's next to it, for `-p`), and the
command reads that file. With `--kubeconfig FILE` it asks the API server instead (the seam's
`pod_logs`: the pod's `log` subresource, which the API server fetches from the node's kubelet API —
for `cdi node`, `cdi.embedded.kubeletapi`). The pod must exist; without `-c` its first container is
shown, as kubectl does. With `-f` the log is followed until the container terminates — learned from
the pod's status through the watch — and the rest is printed: the file is read as it grows; from an
API server, whose log call the seam does not stream, the log is fetched again every second and what
is new is printed (`new_output`).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import sys
from pathlib import Path
from typing import Any, BinaryIO

from cdi.cli.errors import CliError
from cdi.cli.flags import add_kubeconfig, add_namespace, namespace_of
from cdi.cli.state import connect_cluster, pod_log_path
from cdi.cli.waiting import wait_for
from cdi.cluster.kinds import resolve
from cdi.cluster.protocol import Cluster, Object

POD = resolve("pod")
_CHUNK = 64 << 10
_FOLLOW_POLL = 0.1  # how often a followed file is checked for new output
_API_FOLLOW_POLL = 1.0  # how often a followed log is fetched again from an API server
_FINISHED_PHASES = ("Succeeded", "Failed")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("logs", help="print the logs of a container in a pod")
    parser.add_argument("pod", metavar="POD", help="the pod's name, or pod/NAME")
    add_namespace(parser)
    add_kubeconfig(parser)
    parser.add_argument("-c", "--container", default=None, help="the container (default: the pod's first)")
    parser.add_argument("-p", "--previous", action="store_true", help="the log of the container's previous run")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the container ends")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


def _names(pod: Object, field: str) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get(field) or () if isinstance(c, dict)]


def choose_container(pod: Object, wanted: str | None) -> tuple[str, str | None]:
    """The container to show and, when one was picked among several, kubectl's "Defaulted" note."""
    name, containers = pod["metadata"]["name"], _names(pod, "containers")
    if wanted is not None:
        if wanted not in containers + _names(pod, "initContainers"):
            raise CliError(f"container {wanted} is not valid for pod {name}")
        return wanted, None
    if not containers:
        raise CliError(f"pod {name} has no containers")
    note = f'Defaulted container "{containers[0]}" out of: {", ".join(containers)}' if len(containers) > 1 else None
    return containers[0], note


def _container_status(pod: Object, container: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if isinstance(entry, dict) and entry.get("name") == container:
            return entry
    return {}


def terminated(pod: Object | None, container: str) -> bool:
    """Whether the container has stopped for good (or its pod is finished or gone)."""
    if pod is None or (pod.get("status") or {}).get("phase") in _FINISHED_PHASES:
        return True
    return bool((_container_status(pod, container).get("state") or {}).get("terminated"))


def _missing_log(pod: Object, container: str, previous: bool) -> CliError:
    name = pod["metadata"]["name"]
    if previous:
        return CliError(f'previous terminated container "{container}" in pod "{name}" not found')
    waiting = (_container_status(pod, container).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason") or "ContainerCreating"
    return CliError(f'container "{container}" in pod "{name}" is waiting to start: {reason} (no log yet)')


async def run(args: argparse.Namespace, home: Path) -> int:
    name = args.pod.split("/", 1)[1] if args.pod.startswith(("pod/", "pods/", "po/")) else args.pod
    namespace = namespace_of(args)
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout) as cluster:
        pod = await cluster.get(POD.api_version, POD.kind, name, namespace)
        container, note = choose_container(pod, args.container)
        if note:
            print(note, file=sys.stderr)
        if args.kubeconfig is not None:
            await _from_api_server(cluster, pod, container, previous=args.previous, follow=args.follow)
            return 0
        path = pod_log_path(home, namespace, name, container, args.previous)
        try:
            log = path.open("rb")
        except FileNotFoundError:
            raise _missing_log(pod, container, args.previous) from None
        with log:
            if args.follow and not args.previous and not terminated(pod, container):
                await _follow(cluster, pod, container, log)
            else:
                _copy(log, codecs.getincrementaldecoder("utf-8")("replace"))
    return 0


def _copy(log: BinaryIO, decoder: codecs.IncrementalDecoder, final: bool = True) -> bool:
    """Print what the file holds past its current position; True if there was anything."""
    wrote = False
    while chunk := log.read(_CHUNK):
        sys.stdout.write(decoder.decode(chunk))
        wrote = True
    if final:
        sys.stdout.write(decoder.decode(b"", final=True))
    sys.stdout.flush()
    return wrote


async def _follow(cluster: Cluster, pod: Object, container: str, log: BinaryIO) -> None:
    meta = pod["metadata"]
    ended = asyncio.create_task(wait_for(cluster, POD, meta["name"], meta.get("namespace"),
                                         lambda obj: terminated(obj, container), None))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while not ended.done():
            if _copy(log, decoder, final=False):
                await asyncio.sleep(0)  # let the watch run even while output keeps coming
            else:
                await asyncio.wait({ended}, timeout=_FOLLOW_POLL)
        ended.result()  # surface a failed watch
        _copy(log, decoder)
    finally:
        ended.cancel()


def new_output(text: str, printed: str) -> str:
    """What a log fetched again holds beyond what was printed: its tail, or all of it when it no longer
    starts with what was printed (the container restarted and its log began anew). Pure."""
    return text[len(printed):] if text.startswith(printed) else text


async def _from_api_server(cluster: Cluster, pod: Object, container: str, *, previous: bool, follow: bool) -> None:
    meta = pod["metadata"]
    name, namespace = str(meta["name"]), str(meta.get("namespace"))
    if not follow or previous or terminated(pod, container):
        sys.stdout.write(await cluster.pod_logs(name, namespace, container=container, previous=previous))
        sys.stdout.flush()
        return
    ended = asyncio.create_task(wait_for(cluster, POD, name, namespace, lambda obj: terminated(obj, container), None))
    printed = ""
    try:
        while True:
            finished = ended.done()  # looked at before the fetch, so the last fetch has the whole log
            text = await cluster.pod_logs(name, namespace, container=container)
            sys.stdout.write(new_output(text, printed))
            sys.stdout.flush()
            printed = text
            if finished:
                ended.result()  # surface a failed watch
                return
            await asyncio.wait({ended}, timeout=_API_FOLLOW_POLL)
    finally:
        ended.cancel()
