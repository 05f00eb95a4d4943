"""The columns `cdi get` prints for each kind, as pure functions of an object and the time.

`columns_for(kind, wide=...)` picks them: Kubernetes' own kinds get kubectl's built-in columns (from
`cdi.cli.kubernetes_columns`); CDI's kinds get NAME plus the CRD's additionalPrinterColumns from
`cdi.api.kinds.KINDS`, evaluated with `cdi.cli.jsonpath` (a `date` column shows an age; a missing value
is an empty cell), and DataVolumes with `-o wide` also BYTES, RATE and ETA from our transfer annotations
(`cdi.controllers.progresswatch` writes and formats them); any other kind gets NAME and AGE, as a CRD
without printer columns does.
`table_rows` turns objects into the rows `cdi.cli.output.format_table` lays out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from cdi.api.kinds import KINDS, PrinterColumn
from cdi.api.meta import CDI_GROUP
from cdi.cli import kubernetes_columns as k8s
from cdi.cli.ages import since
from cdi.cli.jsonpath import compile_path, render_value
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.progresswatch import human_bytes, human_eta, human_rate

Cell = Callable[[Object, datetime], str]


@dataclass(frozen=True)
class Column:
    """One table column: its header and how to compute a cell."""

    header: str
    cell: Cell
    wide_only: bool = False


def _name(obj: Object, _now: datetime) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _age(obj: Object, now: datetime) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


def _namespace(obj: Object, _now: datetime) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


NAME = Column("NAME", _name)
AGE = Column("AGE", _age)
NAMESPACE = Column("NAMESPACE", _namespace)

_BUILT_IN: dict[tuple[str, str], tuple[Column, ...]] = {
    ("", "PersistentVolumeClaim"): (
        NAME, Column("STATUS", k8s.pvc_status), Column("VOLUME", k8s.pvc_volume),
        Column("CAPACITY", k8s.pvc_capacity), Column("ACCESS MODES", k8s.pvc_access_modes),
        Column("STORAGECLASS", k8s.pvc_storage_class), AGE, Column("VOLUMEMODE", k8s.volume_mode, wide_only=True),
    ),
    ("", "PersistentVolume"): (
        NAME, Column("CAPACITY", k8s.pv_capacity), Column("ACCESS MODES", k8s.pv_access_modes),
        Column("RECLAIM POLICY", k8s.pv_reclaim_policy), Column("STATUS", k8s.pv_status),
        Column("CLAIM", k8s.pv_claim), Column("STORAGECLASS", k8s.pv_storage_class),
        Column("REASON", k8s.pv_reason), AGE, Column("VOLUMEMODE", k8s.volume_mode, wide_only=True),
    ),
    ("", "Pod"): (
        NAME, Column("READY", k8s.pod_ready), Column("STATUS", k8s.pod_status),
        Column("RESTARTS", k8s.pod_restarts), AGE, Column("IP", k8s.pod_ip, wide_only=True),
        Column("NODE", k8s.pod_node, wide_only=True), Column("NOMINATED NODE", k8s.pod_nominated_node, wide_only=True),
        Column("READINESS GATES", k8s.pod_readiness_gates, wide_only=True),
    ),
    ("storage.k8s.io", "StorageClass"): (
        Column("NAME", k8s.storage_class_name), Column("PROVISIONER", k8s.sc_provisioner),
        Column("RECLAIMPOLICY", k8s.sc_reclaim_policy), Column("VOLUMEBINDINGMODE", k8s.sc_binding_mode),
        Column("ALLOWVOLUMEEXPANSION", k8s.sc_expansion), AGE,
    ),
    ("", "Event"): (
        Column("LAST SEEN", k8s.event_last_seen), Column("TYPE", k8s.event_type), Column("REASON", k8s.event_reason),
        Column("OBJECT", k8s.event_object), Column("SUBOBJECT", k8s.event_subobject, wide_only=True),
        Column("SOURCE", k8s.event_source, wide_only=True), Column("MESSAGE", k8s.event_message),
        Column("FIRST SEEN", k8s.event_first_seen, wide_only=True), Column("COUNT", k8s.event_count, wide_only=True),
        Column("NAME", _name, wide_only=True),
    ),
    ("", "Namespace"): (NAME, Column("STATUS", k8s.namespace_status), AGE),
}


def _annotation_int(obj: Object, key: str) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def transfer_bytes(obj: Object, _now: datetime) -> str:
    """"1.2Gi/4.0Gi" (or "1.2Gi" with no known total) from the DataVolume controller's annotations."""
    done = _annotation_int(obj, ann.ANN_TRANSFER_BYTES_DONE)
    if done is None:
        return ""
    total = _annotation_int(obj, ann.ANN_TRANSFER_BYTES_TOTAL)
    return human_bytes(done) + (f"/{human_bytes(total)}" if total is not None else "")


def transfer_rate(obj: Object, _now: datetime) -> str:
    rate = _annotation_int(obj, ann.ANN_TRANSFER_RATE)
    return human_rate(rate) if rate is not None else ""


def transfer_eta(obj: Object, _now: datetime) -> str:
    eta = _annotation_int(obj, ann.ANN_TRANSFER_ETA)
    return human_eta(eta) if eta is not None else ""


# Ours, beyond upstream's printer columns: `-o wide` on DataVolumes adds what the transfer is doing.
_WIDE_EXTRAS: dict[tuple[str, str], tuple[Column, ...]] = {
    (CDI_GROUP, "DataVolume"): (Column("BYTES", transfer_bytes, wide_only=True),
                                Column("RATE", transfer_rate, wide_only=True),
                                Column("ETA", transfer_eta, wide_only=True)),
}


def printer_column(column: PrinterColumn) -> Column:
    """A CRD printer column: the JSONPath's first match, or the age of a `date` value."""
    path = compile_path(column.json_path)
    if column.type == "date":
        def cell(obj: Object, now: datetime) -> str:
            value = path.first(obj)
            return since(value, now) if value is not None else ""
    else:
        def cell(obj: Object, now: datetime) -> str:
            return render_value(path.first(obj))
    return Column(column.name.upper(), cell)


def kind_columns(kind: ResourceKind) -> tuple[Column, ...]:
    """Every column of `kind`, the wide-only ones included."""
    if built_in := _BUILT_IN.get((kind.group, kind.kind)):
        return built_in
    info = KINDS.get(kind.kind)
    if info is not None and info.group == kind.group and info.printer_columns:
        return (NAME, *(printer_column(column) for column in info.printer_columns),
                *_WIDE_EXTRAS.get((kind.group, kind.kind), ()))
    return (NAME, AGE)


def columns_for(kind: ResourceKind, *, wide: bool = False, all_namespaces: bool = False) -> list[Column]:
    """The columns `cdi get` shows for `kind` (NAMESPACE first with -A on a namespaced kind)."""
    columns = [column for column in kind_columns(kind) if wide or not column.wide_only]
    return [NAMESPACE, *columns] if all_namespaces and kind.namespaced else columns


def header(columns: Iterable[Column]) -> list[str]:
    return [column.header for column in columns]


def row(columns: Iterable[Column], obj: Object, now: datetime) -> list[str]:
    return [column.cell(obj, now) for column in columns]


def table_rows(columns: list[Column], objects: Iterable[Object], now: datetime) -> list[list[str]]:
    """The header and one row per object."""
    return [header(columns), *(row(columns, obj, now) for obj in objects)]
