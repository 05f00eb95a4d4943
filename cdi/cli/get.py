"""`cdi get KIND[,KIND...] [NAME...]` or `cdi get KIND/NAME...`: list objects as kubectl does — a table,
`-o wide|yaml|json|name|jsonpath=TEMPLATE` — and with `-w` keep printing rows as objects change, from
the store's watch.

Kind words resolve through `cdi.cluster.kinds.resolve` ("dv", "pvc", "sc", "datavolumes"...). Columns
come from `cdi.cli.columns`, layout from `cdi.cli.output`. Several kinds print one table each, separated
by a blank line, with names qualified by their kind (`datavolume.cdi.kubevirt.io/NAME`), and one List
for the document formats, as kubectl does. Objects asked for by name are read one GET each (a list
only with `-w`), so `get` on them is all an identity needs, as with kubectl. Objects named but absent are reported as
`error: <resource> "NAME" not found` after the others are printed, and the exit code is 1; an empty
list prints kubectl's "No resources found" on stderr and succeeds.

With `--kubeconfig FILE` the command works on that cluster's API server instead of the embedded store
under `--home` (`cdi.cli.state.connect_cluster`), with the same output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cdi.cli.columns import columns_for, header, row
from cdi.cli.errors import CliError
from cdi.cli.flags import add_kubeconfig, add_namespace, namespace_of, parse_duration
from cdi.cli.output import (
    format_table,
    is_document_output,
    object_name,
    output_template,
    parse_output,
    render_documents,
    to_json,
    to_yaml,
)
from cdi.cli.state import connect_cluster
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import ResourceKind, resolve
from cdi.cluster.protocol import Cluster, Object, WatchEvent

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("get", help="list objects, or show some by name")
    parser.add_argument("kind", metavar="KIND",
                        help='a kind ("dv", "pvc", "datavolumes"), kinds ("dv,pvc") or KIND/NAME')
    parser.add_argument("names", nargs="*", metavar="NAME")
    add_namespace(parser, all_namespaces=True)
    add_kubeconfig(parser)
    parser.add_argument("-o", "--output", type=parse_output, default=None, metavar="FORMAT",
                        help="wide, yaml, json, name or jsonpath=TEMPLATE (e.g. jsonpath='{.items[*].metadata.name}')")
    parser.add_argument("-l", "--selector", default=None, help="label selector, e.g. app=web,tier!=db")
    parser.add_argument("-w", "--watch", action="store_true", help="after listing, print changes as they happen")
    parser.add_argument("--no-headers", action="store_true", help="omit the table header")
    parser.add_argument("--timeout", type=parse_duration, default=None,
                        help="with --watch: stop watching after this long (default: until interrupted)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


class Printer:
    """Renders objects in one output format; tables keep their column widths across watch events."""

    def __init__(self, kind: ResourceKind, output: str | None, *, all_namespaces: bool = False,
                 headers: bool = True, qualified: bool = False, clock: Clock = _utc_now) -> None:
        self.kind, self.output, self.clock = kind, output, clock
        self.columns = columns_for(kind, wide=output == "wide", all_namespaces=all_namespaces)
        self.headers = headers
        self.template = output_template(output)
        # With several kinds, kubectl names each row's object with its kind: datavolume.cdi.kubevirt.io/NAME.
        self.name_column = next((i for i, c in enumerate(self.columns) if c.header == "NAME"), None) \
            if qualified else None
        self.widths: list[int] = []

    @property
    def tabular(self) -> bool:
        return self.output in (None, "wide")

    def listing(self, objects: Sequence[Object], *, single: bool = False, streaming: bool = False) -> str:
        """The first output: a table with its header, or the documents (a List unless `single`; one
        document per object when `streaming`, as the watch events that follow)."""
        if self.output is not None and is_document_output(self.output):
            if streaming:
                return "".join(self.change(WatchEvent("ADDED", obj)) for obj in objects)
            return render_documents(objects, self.output, single=single)
        if self.output == "name":
            return "".join(self._name(obj) for obj in objects)
        now = self.clock()
        rows = ([header(self.columns)] if self.headers else []) + [self._row(obj, now) for obj in objects]
        return self._lines(rows)

    def change(self, event: WatchEvent) -> str:
        """One watch event: a row aligned with the table so far, or the object as its own document."""
        obj = event.object
        if self.output == "yaml":
            return "---\n" + to_yaml(obj)
        if self.output == "json":
            return to_json(obj)
        if self.template is not None:
            return self.template.render(obj)
        if self.output == "name":
            return self._name(obj)
        return self._lines([self._row(obj, self.clock())])

    def _row(self, obj: Object, now: datetime) -> list[str]:
        cells = row(self.columns, obj, now)
        if self.name_column is not None:
            cells[self.name_column] = object_name(self.kind, cells[self.name_column])
        return cells

    def _lines(self, rows: list[list[str]]) -> str:
        if not rows:
            return ""
        lines, self.widths = format_table(rows, self.widths)
        return "".join(line + "\n" for line in lines)

    def _name(self, obj: Object) -> str:
        return object_name(self.kind, str(obj["metadata"]["name"])) + "\n"


@dataclass(frozen=True)
class Wanted:
    """One kind the command line asks for, with the names asked for (none: all of them)."""

    kind: ResourceKind
    names: tuple[str, ...] = ()


def split_kind(word: str, names: list[str]) -> tuple[ResourceKind, list[str]]:
    """`dv foo bar` or `dv/foo`: the kind and the names asked for (one kind only)."""
    wanted = parse_request(word, names)
    if len(wanted) != 1:
        raise CliError(f"only one kind may be given here, not {word!r}")
    return wanted[0].kind, list(wanted[0].names)


def parse_request(word: str, names: Sequence[str]) -> list[Wanted]:
    """`dv,pvc [NAME...]` (the names are looked up in every kind) or `dv/a pvc/b`, in the order given."""
    if "/" in word:
        grouped: dict[ResourceKind, list[str]] = {}
        for item in (word, *names):
            kind_word, slash, name = item.partition("/")
            if not slash or not kind_word or not name:
                raise CliError(f"arguments in resource/name form must have a single resource and name: {item!r}")
            grouped.setdefault(resolve(kind_word), []).append(name)
        return [Wanted(kind, tuple(found)) for kind, found in grouped.items()]
    words = [part.strip() for part in word.split(",")]
    if not all(words):
        raise CliError(f"invalid resource list {word!r}: kinds are separated by single commas")
    kinds = list(dict.fromkeys(resolve(part) for part in words))
    return [Wanted(kind, tuple(names)) for kind in kinds]


def _no_resources(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


def _check(args: argparse.Namespace, wanted: list[Wanted]) -> None:
    named = any(w.names for w in wanted)
    if named and args.selector:
        raise CliError("name cannot be provided when a selector is specified")
    if named and args.all_namespaces:
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    if args.watch and len(wanted) > 1:
        raise CliError("you may only specify a single resource type with --watch")


async def run(args: argparse.Namespace, home: Path) -> int:
    wanted = parse_request(args.kind, args.names)
    _check(args, wanted)
    several = len(wanted) > 1
    single = not several and len(wanted[0].names) == 1
    printers = [Printer(w.kind, args.output, all_namespaces=args.all_namespaces, headers=not args.no_headers,
                        qualified=several) for w in wanted]
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout) as cluster:
        found: list[list[Object]] = []
        missing: list[str] = []
        resource_version = ""
        for want in wanted:
            namespace = None if args.all_namespaces or not want.kind.namespaced else namespace_of(args)
            if want.names and not args.watch:
                objects, absent = await _get_named(cluster, want.kind, namespace, want.names)
            else:
                listed = await cluster.list(want.kind.api_version, want.kind.kind, namespace, args.selector)
                objects, absent = _pick(listed.items, list(want.names))
                resource_version = listed.resource_version
            found.append(objects)
            missing.extend(f'error: {want.kind.resource} "{name}" not found' for name in absent)
        _print(printers, found, single=single, streaming=args.watch)
        if not any(found) and not args.watch and not any(w.names for w in wanted):
            print(_no_resources(None if args.all_namespaces else namespace_of(args)), file=sys.stderr)
        for line in missing:
            print(line, file=sys.stderr)
        if args.watch:
            kind = wanted[0].kind
            namespace = None if args.all_namespaces or not kind.namespaced else namespace_of(args)
            await _watch(cluster, kind, namespace, args.selector, resource_version, list(wanted[0].names),
                         printers[0], args.timeout)
    return 1 if missing else 0


def _print(printers: list[Printer], found: list[list[Object]], *, single: bool, streaming: bool) -> None:
    """Every kind's objects: one table per kind (a blank line between), or one List for documents."""
    if is_document_output(printers[0].output) and len(printers) > 1:
        every = [obj for objects in found for obj in objects]
        text = render_documents(every, str(printers[0].output), single=False) if every else ""
    else:
        blocks = [printer.listing(objects, single=single, streaming=streaming)
                  for printer, objects in zip(printers, found, strict=True) if objects or streaming]
        text = ("\n" if printers[0].tabular else "").join(blocks)
    sys.stdout.write(text)
    sys.stdout.flush()


async def _get_named(cluster: Cluster, kind: ResourceKind, namespace: str | None,
                     names: Sequence[str]) -> tuple[list[Object], list[str]]:
    """The objects named, one GET each as kubectl does (so a role granting `get` on them, even by
    resourceNames, suffices), and the names not found."""
    objects: list[Object] = []
    absent: list[str] = []
    for name in names:
        try:
            objects.append(await cluster.get(kind.api_version, kind.kind, name, namespace))
        except NotFound:
            absent.append(name)
    return objects, absent


def _pick(items: list[Object], names: list[str]) -> tuple[list[Object], list[str]]:
    if not names:
        return items, []
    by_name = {obj["metadata"]["name"]: obj for obj in items}
    return [by_name[name] for name in names if name in by_name], [name for name in names if name not in by_name]


async def _watch(cluster: Cluster, kind: ResourceKind, namespace: str | None, selector: str | None,
                 resource_version: str, names: list[str], printer: Printer, timeout: float | None) -> None:
    try:
        async with asyncio.timeout(timeout):
            stream = cluster.watch(kind.api_version, kind.kind, resource_version=resource_version,
                                   namespace=namespace, label_selector=selector)
            async for event in stream:
                if names and event.object["metadata"]["name"] not in names:
                    continue
                sys.stdout.write(printer.change(event))
                sys.stdout.flush()
    except TimeoutError:
        return
