"""`cdi apply -f` and `cdi create -f`: write manifests to the cluster, kubectl-style.

Both read every manifest first (`cdi.cli.manifests`), then handle each object in turn and print one
line per object: `datavolume.cdi.kubevirt.io/NAME created|configured|unchanged`. Admission is the
store's (`cdi.admission`, the same rules for every client): when it refuses an object, every cause is
printed on its own `error: <object>: <problem>` line. An object that fails does not stop the others;
the exit code is 1 if any failed.

`apply` creates a missing object or updates an existing one with kubectl's three-way merge
(`cdi.cli.merging`), retrying when another writer (a controller in `cdi serve`) wins the race
(`Conflict`). `create` only creates; `cdi create configmap|secret generic NAME --from-file/--from-literal`
builds the object from files and literals instead (`cdi.cli.configdata`).

With `--kubeconfig FILE` the command works on that cluster's API server instead of the embedded store
under `--home` (`cdi.cli.state.connect_cluster`), with the same output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cdi.cli import configdata
from cdi.cli.errors import CliError
from cdi.cli.flags import DEFAULT_NAMESPACE, add_filenames, add_kubeconfig, add_namespace
from cdi.cli.manifests import Manifest, read_manifests
from cdi.cli.merging import last_applied, three_way_patch, with_last_applied, without_server_fields
from cdi.cli.output import object_name
from cdi.cli.state import connect_cluster
from cdi.cluster.errors import AlreadyExists, ApiError, BadRequest, Conflict, Forbidden, Invalid, NotFound
from cdi.cluster.kinds import ResourceKind, lookup
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.semantics import merge_patch

Outcome = Literal["created", "configured", "unchanged"]
_ATTEMPTS = 5


@dataclass(frozen=True)
class Target:
    """A manifest resolved against the served kinds, with its namespace settled."""

    kind: ResourceKind
    api_version: str
    name: str
    namespace: str | None
    object: Object

    @property
    def label(self) -> str:
        return object_name(self.kind, self.name or str(self.object["metadata"].get("generateName", "")))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, help_text in (("apply", "create or update objects from manifests"),
                            ("create", "create objects from manifests")):
        parser = commands.add_parser(verb, help=help_text)
        add_filenames(parser, required=verb == "apply")
        add_namespace(parser)
        add_kubeconfig(parser)
        if verb == "create":
            configdata.add_parsers(parser)
        parser.set_defaults(run=lambda args, home, verb=verb: asyncio.run(run(args, home, verb)))


def resolve_target(manifest: Manifest, namespace_flag: str | None) -> Target:
    """The kind, name and namespace of a manifest; `CliError` if the kind is unknown or namespaces clash."""
    doc = without_server_fields(manifest.object)
    api_version, kind_name = str(doc["apiVersion"]), str(doc["kind"])
    try:
        kind = lookup(api_version, kind_name)
    except NotFound as e:
        raise CliError(f'resource mapping not found for name: "{manifest.name}" from "{manifest.source}": '
                       f"{e.message}") from e
    metadata = doc.setdefault("metadata", {})
    declared = metadata.get("namespace")
    if not kind.namespaced:
        metadata.pop("namespace", None)
        return Target(kind, api_version, manifest.name, None, doc)
    if namespace_flag and declared and namespace_flag != declared:
        raise CliError(f'the namespace from the provided object "{declared}" does not match the namespace '
                       f'"{namespace_flag}". You must pass \'--namespace={declared}\' to perform this operation.')
    metadata["namespace"] = declared or namespace_flag or DEFAULT_NAMESPACE
    return Target(kind, api_version, manifest.name, metadata["namespace"], doc)


def _manifest_for(target: Target) -> Object:
    """What gets written: status is the controllers' where the kind has a status subresource."""
    doc = dict(target.object)
    if target.kind.status_subresource:
        doc.pop("status", None)
    return doc


async def create_object(cluster: Cluster, target: Target) -> tuple[Outcome, Object]:
    return "created", await cluster.create(_manifest_for(target))


async def apply_object(cluster: Cluster, target: Target) -> tuple[Outcome, Object]:
    """Create or three-way-merge update `target`, retrying on `Conflict`/`AlreadyExists`."""
    if not target.name:
        raise CliError(f"{target.label}: cannot use generateName with apply; use create")
    desired = with_last_applied(_manifest_for(target))
    last_error: ApiError | None = None
    for _ in range(_ATTEMPTS):
        try:
            stored = await cluster.get(target.api_version, target.kind.kind, target.name, target.namespace)
        except NotFound:
            try:
                return "created", await cluster.create(desired)
            except AlreadyExists as e:
                last_error = e
                continue
        try:
            return await _update(cluster, target.kind, stored, desired)
        except (Conflict, NotFound) as e:
            last_error = e
    assert last_error is not None
    raise last_error


async def _update(cluster: Cluster, kind: ResourceKind, stored: Object, desired: Object) -> tuple[Outcome, Object]:
    patch = three_way_patch(last_applied(stored), desired, stored)
    if not patch:
        return "unchanged", stored
    updated = merge_patch(stored, patch)
    written = await cluster.update(updated)
    same = written["metadata"].get("resourceVersion") == stored["metadata"].get("resourceVersion")
    return ("unchanged" if same else "configured"), written


async def create_from_data(args: argparse.Namespace, home: Path) -> int:
    """`cdi create configmap|secret generic NAME ...`: one object, created, kubectl's one line printed."""
    if args.filenames:
        raise CliError(f"-f cannot be combined with `create {args.create_kind}`")
    namespace = args.namespace or DEFAULT_NAMESPACE
    obj = configdata.build(args, namespace)
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout, create=True) as cluster:
        written = await cluster.create(obj)
    print(f"{object_name(lookup('v1', obj['kind']), written['metadata']['name'])} created", flush=True)
    return 0


async def run(args: argparse.Namespace, home: Path, verb: str) -> int:
    if verb == "create" and getattr(args, "create_kind", None):
        return await create_from_data(args, home)
    if not args.filenames:
        raise CliError("must specify -f FILE, or a kind: configmap, secret generic")
    manifests = read_manifests(args.filenames, sys.stdin)
    if not manifests:
        raise CliError(f"no objects passed to {verb}")
    write: Callable[[Cluster, Target], Awaitable[tuple[Outcome, Object]]] = (
        apply_object if verb == "apply" else create_object)
    failed = 0
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout, create=True) as cluster:
        for manifest in manifests:
            failed += not await _handle(cluster, manifest, args.namespace, write)
    return 1 if failed else 0


async def _handle(cluster: Cluster, manifest: Manifest, namespace: str | None,
                  write: Callable[[Cluster, Target], Awaitable[tuple[Outcome, Object]]]) -> bool:
    """Write one object and print the outcome, or print why not; True on success."""
    try:
        target = resolve_target(manifest, namespace)
        outcome, written = await write(cluster, target)
    except (Invalid, BadRequest, Forbidden) as e:
        for problem in e.causes:
            print(f"error: {target.label}: {problem}", file=sys.stderr)
        return False
    except (ApiError, CliError) as e:
        print(f"error: {e.message}", file=sys.stderr)
        return False
    print(f"{object_name(target.kind, written['metadata']['name'])} {outcome}", flush=True)
    return True
