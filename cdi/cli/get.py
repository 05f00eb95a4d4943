"""`cdi get KIND [NAME...]`: list objects as kubectl does — a table, `-o wide|yaml|json|name` — and with
`-w` keep printing rows as objects change, from the store's watch.

Kind words resolve through `cdi.cluster.kinds.resolve` ("dv", "pvc", "sc", "datavolumes"...). Columns
come from `cdi.cli.columns`, layout from `cdi.cli.output`. Objects named but absent are reported as
`error: <resource> "NAME" not found` after the others are printed, and the exit code is 1; an empty
list prints kubectl's "No resources found" on stderr and succeeds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cdi.cli.columns import columns_for, header, row
from cdi.cli.errors import CliError
from cdi.cli.flags import add_namespace, namespace_of, parse_duration
from cdi.cli.output import OUTPUT_FORMATS, format_table, object_name, render_documents, to_json, to_yaml
from cdi.cli.state import open_cluster
from cdi.cluster.kinds import ResourceKind, resolve
from cdi.cluster.protocol import Cluster, Object, WatchEvent

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("get", help="list objects, or show some by name")
    parser.add_argument("kind", metavar="KIND", help='a kind ("dv", "pvc", "datavolumes") or KIND/NAME')
    parser.add_argument("names", nargs="*", metavar="NAME")
    add_namespace(parser, all_namespaces=True)
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default=None)
    parser.add_argument("-l", "--selector", default=None, help="label selector, e.g. app=web,tier!=db")
    parser.add_argument("-w", "--watch", action="store_true", help="after listing, print changes as they happen")
    parser.add_argument("--no-headers", action="store_true", help="omit the table header")
    parser.add_argument("--timeout", type=parse_duration, default=None,
                        help="with --watch: stop watching after this long (default: until interrupted)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


class Printer:
    """Renders objects in one output format; tables keep their column widths across watch events."""

    def __init__(self, kind: ResourceKind, output: str | None, *, all_namespaces: bool = False,
                 headers: bool = True, clock: Clock = _utc_now) -> None:
        self.kind, self.output, self.clock = kind, output, clock
        self.columns = columns_for(kind, wide=output == "wide", all_namespaces=all_namespaces)
        self.headers = headers
        self.widths: list[int] = []

    @property
    def tabular(self) -> bool:
        return self.output in (None, "wide")

    def listing(self, objects: Sequence[Object], *, single: bool = False, streaming: bool = False) -> str:
        """The first output: a table with its header, or the documents (a List unless `single`; one
        document per object when `streaming`, as the watch events that follow)."""
        if self.output in ("yaml", "json"):
            if streaming:
                return "".join(self.change(WatchEvent("ADDED", obj)) for obj in objects)
            return render_documents(objects, self.output, single=single)
        if self.output == "name":
            return "".join(self._name(obj) for obj in objects)
        now = self.clock()
        rows = ([header(self.columns)] if self.headers else []) + [row(self.columns, obj, now) for obj in objects]
        return self._lines(rows)

    def change(self, event: WatchEvent) -> str:
        """One watch event: a row aligned with the table so far, or the object as its own document."""
        obj = event.object
        if self.output == "yaml":
            return "---\n" + to_yaml(obj)
        if self.output == "json":
            return to_json(obj)
        if self.output == "name":
            return self._name(obj)
        return self._lines([row(self.columns, obj, self.clock())])

    def _lines(self, rows: list[list[str]]) -> str:
        if not rows:
            return ""
        lines, self.widths = format_table(rows, self.widths)
        return "".join(line + "\n" for line in lines)

    def _name(self, obj: Object) -> str:
        return object_name(self.kind, str(obj["metadata"]["name"])) + "\n"


def split_kind(word: str, names: list[str]) -> tuple[ResourceKind, list[str]]:
    """`dv foo bar` or `dv/foo`: the kind and the names asked for."""
    kind_word, slash, name = word.partition("/")
    if slash and not name:
        raise CliError(f"arguments in resource/name form must have a single resource and name: {word!r}")
    return resolve(kind_word), [*([name] if slash else []), *names]


def _no_resources(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


async def run(args: argparse.Namespace, home: Path) -> int:
    kind, names = split_kind(args.kind, args.names)
    if names and args.selector:
        raise CliError("name cannot be provided when a selector is specified")
    if names and args.all_namespaces:
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    namespace = None if args.all_namespaces or not kind.namespaced else namespace_of(args)
    printer = Printer(kind, args.output, all_namespaces=args.all_namespaces, headers=not args.no_headers)
    async with open_cluster(home, busy_timeout=args.request_timeout) as cluster:
        listed = await cluster.list(kind.api_version, kind.kind, namespace, args.selector)
        found, missing = _pick(listed.items, names)
        if found or args.watch:
            sys.stdout.write(printer.listing(found, single=len(names) == 1, streaming=args.watch))
            sys.stdout.flush()
        elif not names:
            print(_no_resources(namespace), file=sys.stderr)
        for name in missing:
            print(f'error: {kind.resource} "{name}" not found', file=sys.stderr)
        if args.watch:
            await _watch(cluster, kind, namespace, args.selector, listed.resource_version, names, printer,
                         args.timeout)
    return 1 if missing else 0


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
