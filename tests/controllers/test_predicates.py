"""The DataVolume and claim controllers' predicates (`ControllerSpec.predicate`): a prefilter that must never
keep out an object its reconciler acts on, and that does keep out what it does not serve.

Checked on one DataVolume of every source shape against the reconcilers' own tests (`handles`, the
clone source, `gap`), which read the parsed object: the predicates read it as stored, unparsed.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdi.api import DataVolume, parse_object
from cdi.controllers.clone.datavolume import clone_source_of
from cdi.controllers.datavolume.claim import may_clone, may_import, may_upload
from cdi.controllers.datavolume.controller import IMPORT_KIND, UPLOAD_KIND
from cdi.controllers.notsupported import gap, may_lack_support
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.setup import ControllerOptions, cdi_controllers
from cdi.embedded import EmbeddedCluster
from tests.runtime.clock import FakeClock

STORAGE = {"resources": {"requests": {"storage": "1Gi"}}}
SOURCES: dict[str, dict[str, Any]] = {
    "http": {"source": {"http": {"url": "http://example.invalid/disk.img"}}},
    "s3": {"source": {"s3": {"url": "s3://bucket/disk.img"}}},
    "gcs": {"source": {"gcs": {"url": "gs://bucket/disk.img"}}},
    "registry": {"source": {"registry": {"url": "docker://example.invalid/disk"}}},
    "blank": {"source": {"blank": {}}},
    "imageio": {"source": {"imageio": {"url": "https://engine.invalid/api", "secretRef": "s", "diskId": "1"}}},
    "vddk": {"source": {"vddk": {"url": "https://vcenter.invalid", "uuid": "u", "backingFile": "f", "secretRef": "s"}}},
    "upload": {"source": {"upload": {}}},
    "pvc": {"source": {"pvc": {"name": "golden", "namespace": "images"}}},
    "snapshot": {"source": {"snapshot": {"name": "snap", "namespace": "images"}}},
    "sourceRef DataSource": {"sourceRef": {"kind": "DataSource", "name": "fedora"}},
    "sourceRef other": {"sourceRef": {"kind": "Unknown", "name": "x"}},
    "nothing": {},
}


def datavolume(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "dv", "namespace": "default", "uid": "u-1"}, "spec": {**spec, "storage": STORAGE}}


@pytest.mark.parametrize("shape", sorted(SOURCES))
def test_each_datavolume_predicate_passes_exactly_what_its_reconciler_serves(shape: str) -> None:
    doc = datavolume(SOURCES[shape])
    dv = parse_object(doc)
    assert isinstance(dv, DataVolume)
    assert may_import(doc) == IMPORT_KIND.handles(dv)
    assert may_upload(doc) == UPLOAD_KIND.handles(dv)
    clones = clone_source_of(dv, "default") is not None or (dv.spec.source_ref is not None
                                                            and dv.spec.source_ref.kind == "DataSource")
    assert may_clone(doc) == clones
    assert may_lack_support("DataVolume", doc) == (gap("DataVolume", doc) is not None)
    # Each shape is served by exactly one DataVolume controller, or said to be unsupported.
    assert sum((may_import(doc), may_upload(doc), may_clone(doc), may_lack_support("DataVolume", doc))) == 1


async def test_a_blank_datavolume_and_its_claim_wake_only_the_controllers_that_serve_them(
        cluster: EmbeddedCluster, clock: FakeClock) -> None:
    """What the scale benchmark measures: the controllers of clones, uploads, populators and unsupported
    objects are not woken by a blank import's DataVolume and claim at all."""
    specs = cdi_controllers(cluster, clock, HttpsProgressScraper(), ControllerOptions("pycdi/pycdi:test"))
    dv = datavolume(SOURCES["blank"])
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "dv", "namespace": "default", "annotations": {"cdi.kubevirt.io/storage.import.source": "none"}},
             "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    woken = sorted(spec.name for spec in specs
                   if (spec.kind, spec.api_version) in {("DataVolume", dv["apiVersion"]), ("PersistentVolumeClaim", "v1")}
                   and (spec.predicate is None or spec.predicate(dv if spec.kind == "DataVolume" else claim)))
    assert woken == ["datavolume-import-controller", "import-controller"]
