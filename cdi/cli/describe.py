"""`cdi describe KIND [NAME...]`: kubectl's generic description of objects, with their Events.

`describe_object` is a pure function of the object, its Events and the time: Name, Namespace, Labels
and Annotations first, then every other field as an indented "Key: value" tree with kubectl's labels
("creationTimestamp" -> "Creation Timestamp", "apiVersion" -> "API Version"), `status.conditions` as a
table, and the `Events:` table (Type, Reason, Age, From, Message) of the v1 Events whose
involvedObject.uid is the object's, oldest first. `cdi.cli.tabwriter` aligns the result as kubectl's
tabwriter does. As in kubectl, each NAME is read with a GET, and one that matches no object exactly
describes those it prefixes (found in a list).

With `--kubeconfig FILE` the command works on that cluster's API server instead of the embedded store
under `--home` (`cdi.cli.state.connect_cluster`), with the same output.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdi.cli.ages import since
from cdi.cli.flags import add_kubeconfig, add_namespace, namespace_of
from cdi.cli.get import split_kind
from cdi.cli.jsonpath import render_value
from cdi.cli.merging import LAST_APPLIED
from cdi.cli.state import connect_cluster
from cdi.cli.tabwriter import align
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Cluster, Object

_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}  # kubectl's smartLabelFor keeps these upper case
_CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|-")
_MAX_ANNOTATION = 140
_CONDITION_FIELDS = (("Type", "type"), ("Status", "status"), ("Reason", "reason"), ("Message", "message"),
                     ("Last Transition", "lastTransitionTime"))
_SKIPPED_METADATA = ("name", "namespace", "labels", "annotations")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("describe", help="show the details of objects and their events")
    parser.add_argument("kind", metavar="KIND")
    parser.add_argument("names", nargs="*", metavar="NAME")
    add_namespace(parser)
    add_kubeconfig(parser)
    parser.add_argument("-l", "--selector", default=None, help="label selector")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


def smart_label(field: str) -> str:
    """A camelCase field as kubectl titles it; keys with other characters (dots, slashes) stay as they are."""
    if not field or not all(char.isalpha() or char == "-" for char in field):
        return field
    parts = [part for part in _CAMEL_PART.findall(field) if part != "_"]
    return " ".join(part.upper() if part.upper() in _ACRONYMS else part[:1].upper() + part[1:] for part in parts)


def _key_values(title: str, pairs: list[str]) -> list[str]:
    if not pairs:
        return [f"{title}:\t<none>"]
    return [f"{title}:\t{pairs[0]}", *(f"\t{pair}" for pair in pairs[1:])]


def _annotation(key: str, value: str) -> str:
    line = f"{key}: {value}"
    first = line.split("\n", 1)[0]
    return first[:_MAX_ANNOTATION] + "..." if len(first) > _MAX_ANNOTATION or first != line else line


def _tree(content: dict[str, Any], level: int, path: str, lines: list[str]) -> None:
    """kubectl's printUnstructuredContent: sorted keys, maps nested, lists item by item."""
    indent = "  " * level
    for field in sorted(content):
        value, here = content[field], f"{path}.{field}"
        if here in {f".metadata.{name}" for name in _SKIPPED_METADATA}:
            continue
        if here == ".status.conditions" and isinstance(value, list):
            lines.append(f"{indent}{smart_label(field)}:")
            lines.extend(_conditions(value, level + 1))
        elif isinstance(value, dict):
            lines.append(f"{indent}{smart_label(field)}:")
            _tree(value, level + 1, here, lines)
        elif isinstance(value, list):
            lines.append(f"{indent}{smart_label(field)}:")
            for item in value:
                if isinstance(item, dict):
                    _tree(item, level + 1, here, lines)
                else:
                    lines.append(f"{indent}  {render_value(item)}")
        else:
            lines.append(f"{indent}{smart_label(field)}:\t{render_value(value)}")


def _conditions(conditions: list[Any], level: int) -> list[str]:
    indent = "  " * level
    rows = [[render_value(c.get(key)) for _, key in _CONDITION_FIELDS] for c in conditions if isinstance(c, dict)]
    table = [[title for title, _ in _CONDITION_FIELDS], ["-" * len(title) for title, _ in _CONDITION_FIELDS], *rows]
    return [indent + "\t".join(cells) for cells in table]


def _timestamp(event: Object) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")


def events_section(events: Iterable[Object], now: datetime) -> list[str]:
    """kubectl's Events table, oldest last-seen first; "x3 over 5m" for repeated events."""
    ordered = sorted(events, key=_timestamp)
    if not ordered:
        return ["Events:\t<none>"]
    lines = ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
    for event in ordered:
        first = since(event.get("firstTimestamp") or event.get("eventTime"), now)
        count = int(event.get("count") or 1)
        age = f"{since(event.get('lastTimestamp'), now)} (x{count} over {first})" if count > 1 else first
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
        lines.append(f"  {event.get('type', '')}\t{event.get('reason', '')}\t{age}\t{source}\t"
                     f"{str(event.get('message', '')).strip()}")
    return lines


def describe_object(obj: Object, events: Iterable[Object], now: datetime) -> str:
    """The whole description of one object, as kubectl's generic describer prints it."""
    meta = obj.get("metadata") or {}
    labels = [f"{key}={value}" for key, value in sorted((meta.get("labels") or {}).items())]
    annotations = [_annotation(key, str(value)) for key, value in sorted((meta.get("annotations") or {}).items())
                   if key != LAST_APPLIED]
    lines = [f"Name:\t{meta.get('name', '')}", f"Namespace:\t{meta.get('namespace', '')}",
             *_key_values("Labels", labels), *_key_values("Annotations", annotations)]
    _tree(obj, 0, "", lines)
    # kubectl flushes before the events, so their table aligns on its own.
    return "".join(line + "\n" for line in [*align(lines), *align(events_section(events, now))])


async def events_about(cluster: Cluster, obj: Object, kind: ResourceKind) -> list[Object]:
    """The v1 Events whose involvedObject is `obj` (by uid; selected by the server, as kubectl asks)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") if kind.namespaced else None
    listed = await cluster.list("v1", "Event", namespace, field_selector=f"involvedObject.uid={meta.get('uid')}")
    return [event for event in listed.items
            if (event.get("involvedObject") or {}).get("uid") == meta.get("uid")]


async def _named(cluster: Cluster, kind: ResourceKind, namespace: str | None, names: list[str],
                 selector: str | None) -> list[Object]:
    """The objects `names` name: one GET each, as kubectl; a name that is no object's is looked up as a
    prefix in a list (`select`)."""
    if not names or selector:
        listed = await cluster.list(kind.api_version, kind.kind, namespace, selector)
        return select(listed.items, names, kind)
    chosen: list[Object] = []
    for name in names:
        try:
            found = [await cluster.get(kind.api_version, kind.kind, name, namespace)]
        except NotFound:
            found = select((await cluster.list(kind.api_version, kind.kind, namespace)).items, [name], kind)
        chosen.extend(obj for obj in found if obj not in chosen)
    return chosen


def select(items: list[Object], names: list[str], kind: ResourceKind) -> list[Object]:
    """Exact name matches, else objects the name prefixes (kubectl's describe); `NotFound` if none."""
    if not names:
        return items
    chosen: list[Object] = []
    for name in names:
        exact = [obj for obj in items if obj["metadata"]["name"] == name]
        matches = exact or [obj for obj in items if str(obj["metadata"]["name"]).startswith(name)]
        if not matches:
            raise NotFound(f'{kind.resource} "{name}" not found')
        chosen.extend(obj for obj in matches if obj not in chosen)
    return chosen


async def run(args: argparse.Namespace, home: Path) -> int:
    kind, names = split_kind(args.kind, args.names)
    namespace = namespace_of(args) if kind.namespaced else None
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout) as cluster:
        objects = await _named(cluster, kind, namespace, names, args.selector)
        if not objects:
            where = f" in {namespace} namespace" if namespace else ""
            print(f"No resources found{where}.", file=sys.stderr)
            return 0
        descriptions = [describe_object(obj, await events_about(cluster, obj, kind), datetime.now(UTC))
                        for obj in objects]
    sys.stdout.write("\n".join(descriptions))
    return 0
