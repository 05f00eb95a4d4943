"""S3 and GCS DataVolumes end to end through the real CLI and a real `cdi serve` (one control plane,
five DataVolumes, to keep the run short): Secrets resolved the way upstream mounts them (S3 access
keys as env vars, a GCS service-account key file at /google), the right bytes on the volume, and a
tampered object or a wrong checksum refused with ChecksumError. A user checksum reaches s3/gcs
imports through the DataVolume annotation `cdi.kubevirt.io/storage.import.checksum` (upstream's API
has a checksum field for http only), which the claim inherits and the importer pod receives."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdi.embedded.pods.volumes import pv_path
from tests.e2e.test_datavolume_import import sha256_prefix
from tests.support.catalog import ImageSet, sha256_file
from tests.support.controlplane import ControlPlane
from tests.support.gcs import GcsEmulator
from tests.support.s3 import MotoS3

pytestmark = pytest.mark.slow

ACCESS_KEY, SECRET_KEY = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with GcsEmulator(tmp_path_factory.mktemp("gcs-e2e")) as server:
        yield server


def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque", "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def datavolume(name: str, source: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": metadata,
            "spec": {"source": source, "storage": {"resources": {"requests": {"storage": "128Mi"}},
                                                   "storageClassName": "local"}}}


def apply_all(plane: ControlPlane, *documents: dict[str, Any]) -> None:
    plane.cdi("apply", "-f", "-", input=yaml.safe_dump_all(documents))


def listed(plane: ControlPlane, kind: str) -> dict[str, dict[str, Any]]:
    """Every object of a kind by name, in one CLI call (each call is a process start)."""
    reply = json.loads(plane.cdi("get", kind, "-A", "-o", "json").stdout)
    return {obj["metadata"]["name"]: obj for obj in reply.get("items", [])}


def settled(plane: ControlPlane, names: list[str]) -> dict[str, dict[str, Any]]:
    """Wait until every named DataVolume is Succeeded or Failed; their documents by name."""
    def finished() -> dict[str, dict[str, Any]] | None:
        dvs = listed(plane, "dv")
        done = all(((dvs.get(n) or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") for n in names)
        return dvs if done else None
    result: dict[str, dict[str, Any]] = plane.wait_for(finished, f"DataVolumes {names} to finish", timeout=120)
    return result


def volume_paths(plane: ControlPlane) -> dict[str, Path]:
    """Each claim's volume directory, by claim name."""
    volumes = {pv["metadata"]["name"]: pv for pv in listed(plane, "pv").values()}
    return {name: Path(pv_path(volumes[pvc["spec"]["volumeName"]]) or "") for name, pvc in listed(plane, "pvc").items()}


def running(dv: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in dv["status"]["conditions"] if c["type"] == "Running")


def test_object_store_datavolumes(control_plane: ControlPlane, s3: MotoS3, gcs: GcsEmulator, images: ImageSet,
                                  tmp_path: Path) -> None:
    """Three DataVolumes that must import the right bytes (S3 with keys and a user checksum; GCS
    anonymous; GCS with a service-account key), and two that must be refused: an S3 object whose bytes
    no longer match its ETag, and a GCS object with a wrong user checksum."""
    qcow2 = images.path("disk.qcow2")
    s3.upload("images", "fedora/disk.qcow2", qcow2)
    s3.upload("images", "tampered/disk.qcow2", qcow2)
    s3.tamper("images", "tampered/disk.qcow2")
    gcs.bucket("public-images")
    gcs.upload("public-images", "disk.raw.xz", images.path("disk.raw.xz"))
    gcs.upload("public-images", "disk.qcow2", qcow2)
    gcs.bucket("private-images", private=True)
    gcs.upload("private-images", "disk.qcow2.gz", images.path("disk.qcow2.gz"))
    key = gcs.service_account_key(tmp_path / "credentials.json").read_bytes()
    wrong = "0" * 64
    apply_all(
        control_plane,
        secret("s3-creds", {"accessKeyId": ACCESS_KEY.encode(), "secretKey": SECRET_KEY.encode()}),
        secret("gcs-creds", {"credentials.json": key}),
        datavolume("s3-dv", {"s3": {"url": s3.url("images", "fedora/disk.qcow2"), "secretRef": "s3-creds"}},
                   {"cdi.kubevirt.io/storage.import.checksum": f"sha256:{sha256_file(qcow2)}"}),
        datavolume("gcs-dv", {"gcs": {"url": f"{gcs.url}/public-images/disk.raw.xz"}}),
        datavolume("gcs-private-dv", {"gcs": {"url": f"{gcs.url}/private-images/disk.qcow2.gz",
                                              "secretRef": "gcs-creds"}}),
        datavolume("tampered-dv", {"s3": {"url": s3.url("images", "tampered/disk.qcow2"), "secretRef": "s3-creds"}}),
        datavolume("wrong-checksum-dv", {"gcs": {"url": f"{gcs.url}/public-images/disk.qcow2"}},
                   {"cdi.kubevirt.io/storage.import.checksum": f"sha256:{wrong}"}),
    )
    good, refused = ["s3-dv", "gcs-dv", "gcs-private-dv"], ["tampered-dv", "wrong-checksum-dv"]
    dvs = settled(control_plane, good + refused)
    paths = volume_paths(control_plane)
    for name in good:
        assert (dvs[name]["status"]["phase"], dvs[name]["status"]["progress"]) == ("Succeeded", "100.0%"), dvs[name]
        assert sha256_prefix(paths[name] / "disk.img", images.virtual_size) == images.reference_sha256
    assert gcs.authorized_reads >= 1

    for name in refused:
        assert dvs[name]["status"]["phase"] == "Failed"
        assert running(dvs[name])["reason"] == "ChecksumError"
        assert not (paths[name] / "disk.img").exists()
    assert f"checksum mismatch: expected md5:{hashlib.md5(qcow2.read_bytes()).hexdigest()}, calculated md5:" \
           in running(dvs["tampered-dv"])["message"]
    assert f"checksum mismatch: expected sha256:{wrong}, calculated sha256:{sha256_file(qcow2)}" \
           in running(dvs["wrong-checksum-dv"])["message"]
