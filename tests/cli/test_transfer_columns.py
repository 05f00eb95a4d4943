"""`cdi get dv -o wide` adds BYTES, RATE and ETA (ours) from the DataVolume controller's transfer annotations;
the plain table stays upstream's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdi.cli.columns import columns_for, header, row
from cdi.cluster.kinds import resolve
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann

NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)
GI, MI = 1 << 30, 1 << 20


def dv(notes: dict[str, str]) -> Object:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "fedora", "namespace": "default", "creationTimestamp": "2024-05-10T11:59:00Z",
                         "annotations": notes},
            "status": {"phase": "ImportInProgress", "progress": "30.00%", "restartCount": 0}}


def test_wide_adds_bytes_rate_and_eta_after_upstreams_columns() -> None:
    assert header(columns_for(resolve("dv"), wide=True)) == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE", "BYTES",
                                                             "RATE", "ETA"]
    assert header(columns_for(resolve("dv"))) == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]


@pytest.mark.parametrize(("notes", "cells"), [
    ({ann.ANN_TRANSFER_BYTES_DONE: str(int(1.2 * GI)), ann.ANN_TRANSFER_BYTES_TOTAL: str(4 * GI),
      ann.ANN_TRANSFER_RATE: str(45 * MI), ann.ANN_TRANSFER_ETA: "70"}, ["1.2Gi/4.0Gi", "45Mi/s", "1m10s"]),
    ({ann.ANN_TRANSFER_BYTES_DONE: str(300 * MI), ann.ANN_TRANSFER_RATE: "0"}, ["300Mi", "0B/s", ""]),  # no total
    ({}, ["", "", ""]),  # nothing running (or an older controller)
    ({ann.ANN_TRANSFER_BYTES_DONE: "lots"}, ["", "", ""]),  # not ours to trust: an empty cell
])
def test_cells(notes: dict[str, str], cells: list[str]) -> None:
    assert row(columns_for(resolve("dv"), wide=True), dv(notes), NOW)[5:] == cells
