"""`cdi wait KIND/NAME --for=...`: block until objects reach a state, like kubectl wait.

`--for` takes `condition=Ready` (status True), `condition=Ready=False`, `jsonpath={.status.phase}=Succeeded`
(or just `jsonpath={.status.claimName}` for "has a value"), `delete` and `create`. `parse_for` turns it
into a `WaitFor` whose `met(obj)` is a pure predicate, tested on its own; `cdi.cli.waiting` follows the
store's watch until it holds. Each object met prints `datavolume.cdi.kubevirt.io/NAME condition met`;
a timeout (`--timeout`, default 30s as in kubectl) ends with
`error: timed out waiting for the condition on datavolumes/NAME` and exit code 1.

Unlike kubectl, waiting for a condition or JSONPath that is not met stops at once when the object says it
will not progress (`cdi.contracts.conditions.wont_progress`: a NotSupported condition on any kind, or a
DataVolume's phase Failed): `error: datavolumes/NAME will not progress: <reason>: <message>`,
exit code 1. A predicate already met still succeeds (`--for=jsonpath={.status.phase}=Failed`).

With `--kubeconfig FILE` the command works on that cluster's API server instead of the embedded store
under `--home` (`cdi.cli.state.connect_cluster`), with the same output.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path

from cdi.cli.errors import CliError
from cdi.cli.flags import add_kubeconfig, add_namespace, namespace_of, parse_duration
from cdi.cli.jsonpath import JsonPath, JsonPathError, compile_path, render_value
from cdi.cli.output import object_name
from cdi.cli.state import connect_cluster
from cdi.cli.waiting import Predicate, current_state, wait_for
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import ResourceKind, resolve
from cdi.cluster.protocol import Object
from cdi.contracts.conditions import wont_progress

DEFAULT_TIMEOUT = 30.0


class WontProgress(CliError):
    """The DataVolume waited for says it will not get there."""

    def __init__(self, resource: str, name: str, reason: str, message: str) -> None:
        super().__init__(f"{resource}/{name} will not progress: {reason}: {message}")


@dataclass(frozen=True)
class WaitFor:
    """What `--for` asks: one of "condition", "jsonpath", "delete", "create"."""

    mode: str
    condition: str = ""
    status: str = "True"
    path: JsonPath | None = None
    value: str | None = None

    def met(self, obj: Object | None, *, uid: str | None = None) -> bool:
        """Whether `obj` (None: absent) satisfies the wait; for "delete", a new object with another uid counts."""
        if self.mode == "delete":
            return obj is None or (uid is not None and obj["metadata"].get("uid") != uid)
        if obj is None:
            return False
        if self.mode == "create":
            return True
        if self.mode == "condition":
            return condition_met(obj, self.condition, self.status)
        assert self.path is not None
        found = self.path.find(obj)
        if self.value is None:
            return bool(found) and found[0] is not None
        return bool(found) and render_value(found[0]) == self.value


def condition_met(obj: Object, condition: str, status: str) -> bool:
    """kubectl's rule: type and status compared case-insensitively; a stale observedGeneration does not count."""
    generation = (obj.get("metadata") or {}).get("generation")
    for entry in (obj.get("status") or {}).get("conditions") or ():
        if not isinstance(entry, dict) or str(entry.get("type", "")).lower() != condition.lower():
            continue
        observed = entry.get("observedGeneration")
        if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
            return False
        return str(entry.get("status", "")).lower() == status.lower()
    return False


def failing_fast(wanted: WaitFor, kind: ResourceKind, name: str, uid: str | None) -> Predicate:
    """`wanted.met`, raising `WontProgress` for an object that says it will not progress (a DataVolume that
    failed, any kind with a NotSupported condition) while the condition or JSONPath is not met (delete
    and create waits are left alone)."""
    def met(obj: Object | None) -> bool:
        if wanted.met(obj, uid=uid):
            return True
        watched = obj is not None and wanted.mode in ("condition", "jsonpath")
        if watched and obj is not None and (stuck := wont_progress(obj)) is not None:
            raise WontProgress(kind.plural, name, *stuck)
        return False

    return met


def parse_for(text: str) -> WaitFor:
    """`--for`'s value; `argparse.ArgumentTypeError` when it is none of the supported forms."""
    mode, _, rest = text.partition("=")
    if mode in ("delete", "create") and not rest:
        return WaitFor(mode)
    if mode == "condition" and rest:
        condition, _, status = rest.partition("=")
        if condition:
            return WaitFor("condition", condition=condition, status=status or "True")
    if mode == "jsonpath" and rest:
        return _jsonpath(rest)
    raise argparse.ArgumentTypeError(
        f"unrecognized condition {text!r}: use condition=NAME[=VALUE], jsonpath={{PATH}}[=VALUE], delete or create")


def _jsonpath(rest: str) -> WaitFor:
    expression, value = rest, None
    if rest.startswith("{"):
        close = rest.find("}")
        if close < 0:
            raise argparse.ArgumentTypeError(f"unterminated JSONPath expression {rest!r}")
        expression, tail = rest[:close + 1], rest[close + 1:]
        if tail and not tail.startswith("="):
            raise argparse.ArgumentTypeError(f"expected =VALUE after the JSONPath expression, got {tail!r}")
        value = tail[1:] if tail else None
    elif "=" in rest:
        expression, value = rest.split("=", 1)
    try:
        return WaitFor("jsonpath", path=compile_path(expression), value=value)
    except JsonPathError as e:
        raise argparse.ArgumentTypeError(e.message) from e


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("wait", help="wait for objects to reach a condition")
    parser.add_argument("targets", nargs="+", metavar="KIND/NAME", help="KIND/NAME..., or KIND NAME...")
    add_namespace(parser)
    add_kubeconfig(parser)
    parser.add_argument("--for", dest="wait_for", type=parse_for, required=True, metavar="CONDITION",
                        help="condition=Ready[=False], jsonpath={.status.phase}=Succeeded, delete or create")
    parser.add_argument("--timeout", type=parse_duration, default=DEFAULT_TIMEOUT,
                        help="how long to wait for each object (default: 30s)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


def parse_targets(words: list[str]) -> list[tuple[ResourceKind, str]]:
    """`dv/a pvc/b` or `dv a b` into (kind, name) pairs."""
    if "/" in words[0]:
        pairs = [word.partition("/") for word in words]
        if any(not slash or not kind or not name for kind, slash, name in pairs):
            raise CliError("there is no need to specify a resource type as a separate argument when passing "
                           "arguments in resource/name form (e.g. 'cdi wait dv/NAME')")
        return [(resolve(kind), name) for kind, _, name in pairs]
    if len(words) < 2:
        raise CliError(f'resource(s) were provided, but no name was specified: use "{words[0]}/NAME"')
    kind = resolve(words[0])
    return [(kind, name) for name in words[1:]]


async def run(args: argparse.Namespace, home: Path) -> int:
    targets = parse_targets(args.targets)
    wanted: WaitFor = args.wait_for
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout) as cluster:
        for kind, name in targets:
            namespace = namespace_of(args) if kind.namespaced else None
            initial = await current_state(cluster, kind, name, namespace)
            if initial is None and wanted.mode == "delete":
                continue  # already gone: nothing to report, as kubectl
            if initial is None and wanted.mode != "create":
                raise NotFound(f'{kind.resource} "{name}" not found')
            uid = initial["metadata"].get("uid") if initial is not None else None
            await wait_for(cluster, kind, name, namespace, failing_fast(wanted, kind, name, uid), args.timeout)
            print(f"{object_name(kind, name)} condition met", flush=True)
    return 0
