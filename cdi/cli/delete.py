"""`cdi delete KIND NAME... | -f FILE`: delete objects and, by default, wait until they are really gone.

Each deletion prints kubectl's `datavolume.cdi.kubevirt.io "NAME" deleted` as soon as the store accepts
it. An object with finalizers then lingers with a deletionTimestamp until its controllers remove them;
with `--wait` (the default, as in kubectl) the command follows the store's watch (`cdi.cli.waiting`)
until every deleted object has disappeared, or reports kubectl's timeout error after `--timeout`
(default 60s). Objects that do not exist are reported one line each (unless `--ignore-not-found`) and
make the exit code 1 without stopping the rest.

With `--kubeconfig FILE` the command works on that cluster's API server instead of the embedded store
under `--home` (`cdi.cli.state.connect_cluster`), with the same output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cdi.cli.apply import resolve_target
from cdi.cli.errors import CliError
from cdi.cli.flags import add_filenames, add_kubeconfig, add_namespace, namespace_of, parse_bool, parse_duration
from cdi.cli.get import split_kind
from cdi.cli.manifests import read_manifests
from cdi.cli.output import kind_label
from cdi.cli.state import connect_cluster
from cdi.cli.waiting import wait_for
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Cluster, Object

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Doomed:
    """One object to delete."""

    kind: ResourceKind
    name: str
    namespace: str | None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("delete", help="delete objects by kind and name, selector or manifest")
    parser.add_argument("kind", nargs="?", metavar="KIND", help="a kind, or KIND/NAME")
    parser.add_argument("names", nargs="*", metavar="NAME")
    add_filenames(parser, required=False)
    add_namespace(parser)
    add_kubeconfig(parser)
    parser.add_argument("-l", "--selector", default=None, help="delete the objects matching this label selector")
    parser.add_argument("--all", action="store_true", help="delete every object of the kind in the namespace")
    parser.add_argument("--wait", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                        help="wait until the objects are gone (default: true; --wait=false to return at once)")
    parser.add_argument("--timeout", type=parse_duration, default=DEFAULT_TIMEOUT,
                        help="how long --wait waits for each object (default: 60s)")
    parser.add_argument("--ignore-not-found", action="store_true", help="treat absent objects as deleted")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


def _from_manifests(args: argparse.Namespace) -> list[Doomed]:
    if args.kind or args.selector or args.all:
        raise CliError("when -f is given, pass no KIND, NAME, --selector or --all")
    targets = [resolve_target(manifest, args.namespace) for manifest in read_manifests(args.filenames, sys.stdin)]
    if not targets:
        raise CliError("no objects passed to delete")
    return [Doomed(target.kind, target.name, target.namespace) for target in targets]


async def _from_arguments(cluster: Cluster, args: argparse.Namespace) -> list[Doomed]:
    if not args.kind:
        raise CliError("you must provide one or more resources by argument or filename (-f)")
    kind, names = split_kind(args.kind, args.names)
    namespace = namespace_of(args) if kind.namespaced else None
    if names and (args.selector or args.all):
        raise CliError("name cannot be provided when a selector or --all is specified")
    if not names and not (args.selector or args.all):
        raise CliError(f'resource(s) were provided, but no name was specified: use "{args.kind} NAME", '
                       "--selector or --all")
    if not names:
        listed = await cluster.list(kind.api_version, kind.kind, namespace, args.selector)
        names = [obj["metadata"]["name"] for obj in listed.items]
        if not names:
            print(f"No resources found{f' in {namespace} namespace' if namespace else ''}.", file=sys.stderr)
    return [Doomed(kind, name, namespace) for name in names]


async def _delete(cluster: Cluster, doomed: Doomed, ignore_not_found: bool) -> Object | None:
    """Delete one object; returns it as it was (to wait on its uid), or None if it was not there."""
    kind = doomed.kind
    try:
        before = await cluster.get(kind.api_version, kind.kind, doomed.name, doomed.namespace)
        await cluster.delete(kind.api_version, kind.kind, doomed.name, doomed.namespace)
    except NotFound as e:
        if not ignore_not_found:
            print(f"error: {e.message}", file=sys.stderr)
        return None
    print(f'{kind_label(kind)} "{doomed.name}" deleted', flush=True)
    return before


def _gone(before: Object, now: Object | None) -> bool:
    """Deleted for real: absent, or replaced by a new object of the same name."""
    return now is None or now["metadata"].get("uid") != before["metadata"].get("uid")


async def run(args: argparse.Namespace, home: Path) -> int:
    failed = False
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout) as cluster:
        doomed = _from_manifests(args) if args.filenames else await _from_arguments(cluster, args)
        deleted: list[tuple[Doomed, Object]] = []
        for item in doomed:
            before = await _delete(cluster, item, args.ignore_not_found)
            if before is not None:
                deleted.append((item, before))
            elif not args.ignore_not_found:
                failed = True
        if args.wait:
            for item, before in deleted:
                await wait_for(cluster, item.kind, item.name, item.namespace, partial(_gone, before), args.timeout)
    return 1 if failed else 0
