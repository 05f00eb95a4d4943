"""`cdi logs POD`: print a container's log, as the embedded pod runner wrote it.

The runner of `cdi serve` writes each container's output to the file `cdi.cli.state.pod_log_path`
names (and keeps the previous run's next to it, for `-p`). The pod must exist; without `-c` its first
container is shown, as kubectl does. With `-f` the file is followed until the container terminates —
learned from the pod's status through the store's watch — and the rest of the file is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import sys
from pathlib import Path
from typing import Any, BinaryIO

from cdi.cli.errors import CliError
from cdi.cli.flags import add_namespace, namespace_of
from cdi.cli.state import open_cluster, pod_log_path
from cdi.cli.waiting import wait_for
from cdi.cluster.kinds import resolve
from cdi.cluster.protocol import Cluster, Object

POD = resolve("pod")
_CHUNK = 64 << 10
_FOLLOW_POLL = 0.1  # how often a followed file is checked for new output
_FINISHED_PHASES = ("Succeeded", "Failed")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("logs", help="print the logs of a container in a pod")
    parser.add_argument("pod", metavar="POD", help="the pod's name, or pod/NAME")
    add_namespace(parser)
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
    async with open_cluster(home, busy_timeout=args.request_timeout) as cluster:
        pod = await cluster.get(POD.api_version, POD.kind, name, namespace)
        container, note = choose_container(pod, args.container)
        if note:
            print(note, file=sys.stderr)
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
