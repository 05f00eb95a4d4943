"""Clones end to end through the real CLI and a real `cdi serve`: the seeds' PVC-clone DataVolume
(`storage: {}`, across namespaces), each strategy and volume mode, a VolumeSnapshot source, a missing
source that appears later, and a control plane killed mid-clone. Every case checks the bytes of the
target's disk against the source's, the recorded strategy, and that no temporary object is left."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_datavolume_import import wide_row
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.slow

SOURCE_NS = "golden-images"
OWNED_BY = "cdi.kubevirt.io/OwnedByUID"

# Seed 6.2.6.3.1 "Cloning a PVC to a data volume", placeholders filled in.
SEED_PVC_CLONE = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: {name}
spec:
  source:
    pvc:
      namespace: "{namespace}"
      name: "{source}"
  storage: {{}}
"""


def golden(name: str, url: str, *, mode: str = "Filesystem", size: str = "256Mi") -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "namespace": SOURCE_NS},
            "spec": {"source": {"http": {"url": url}},
                     "storage": {"volumeMode": mode, "resources": {"requests": {"storage": size}}}}}


def clone_dv(name: str, source: str, *, mode: str | None = None, size: str | None = None,
             snapshot: bool = False) -> dict[str, Any]:
    storage: dict[str, Any] = {}
    if mode:
        storage["volumeMode"] = mode
    if size:
        storage["resources"] = {"requests": {"storage": size}}
    kind = "snapshot" if snapshot else "pvc"
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": name},
            "spec": {"source": {kind: {"namespace": SOURCE_NS, "name": source}}, "storage": storage}}


def phase(plane: ControlPlane, name: str, namespace: str = "default") -> str:
    dv = plane.get("dv", name, namespace)
    return str(((dv or {}).get("status") or {}).get("phase") or "")


def clone_state(plane: ControlPlane, name: str, namespace: str) -> str:
    """What a stuck clone looks like, for the failure message: its claim's clone annotations and the events."""
    claim = plane.get("pvc", name, namespace) or {}
    notes = {k: v for k, v in ((claim.get("metadata") or {}).get("annotations") or {}).items() if "token" not in k}
    claims = plane.cdi("get", "pvc,volumesnapshot", "-A", check=False).stdout
    events = plane.cdi("get", "events", "-A", check=False).stdout
    return f"claim {namespace}/{name}: {notes} {claim.get('status')}\n{claims}\n{events[-6000:]}"


def wait_succeeded(plane: ControlPlane, name: str, namespace: str = "default", timeout: float = 180) -> dict[str, Any]:
    try:
        plane.wait_for(lambda: phase(plane, name, namespace) == "Succeeded", f"DataVolume {name} Succeeded", timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{clone_state(plane, name, namespace)}") from None
    dv = plane.get("dv", name, namespace)
    assert dv is not None
    return dv


def data_of(plane: ControlPlane, claim: str, namespace: str, length: int) -> str:
    """sha256 of the first `length` bytes of a claim's disk: disk.img, or the device of a Block claim."""
    path = plane.volume_path(claim, namespace)
    target = path / "disk.img" if path.is_dir() else path
    digest = hashlib.sha256()
    with target.open("rb") as f:
        remaining = length
        while remaining:
            chunk = f.read(min(remaining, 4 << 20))
            assert chunk, f"{target} is shorter than {length}"
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def leftovers(plane: ControlPlane, namespace: str) -> list[str]:
    """Temporary clone objects still in `namespace`."""
    found = []
    for kind in ("pvc", "volumesnapshot", "pod"):
        listing = yaml.safe_load(plane.cdi("get", kind, "-n", namespace, "-o", "yaml").stdout) or {}
        found += [f"{kind}/{item['metadata']['name']}" for item in listing.get("items") or []
                  if OWNED_BY in (item["metadata"].get("labels") or {})]
    return found


def events_of(plane: ControlPlane, name: str, namespace: str = "default") -> list[tuple[str, str]]:
    listing = yaml.safe_load(plane.cdi("get", "events", "-n", namespace, "-o", "yaml").stdout) or {}
    return [(e["reason"], e.get("message", "")) for e in listing.get("items") or []
            if e["involvedObject"].get("name") == name]


@pytest.fixture
def source_namespace(control_plane: ControlPlane) -> str:
    control_plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SOURCE_NS}})
    return SOURCE_NS


def import_golden(plane: ControlPlane, nginx: NginxServer, name: str = "golden", **kwargs: Any) -> None:
    plane.apply(golden(name, nginx.url("disk.qcow2"), **kwargs))
    wait_succeeded(plane, name, SOURCE_NS)


def test_seed_pvc_clone_across_namespaces_sizes_itself_and_snapshots(
        control_plane: ControlPlane, nginx: NginxServer, images: ImageSet, source_namespace: str) -> None:
    import_golden(control_plane, nginx)
    control_plane.apply(SEED_PVC_CLONE.format(name="my-clone", namespace=SOURCE_NS, source="golden"))
    dv = wait_succeeded(control_plane, "my-clone")
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == "snapshot"
    assert dv["status"]["progress"] == "100.0%"
    assert data_of(control_plane, "my-clone", "default", images.virtual_size) == images.reference_sha256
    claim = control_plane.get("pvc", "my-clone")
    assert claim is not None
    assert claim["metadata"]["annotations"]["cdi.kubevirt.io/clonePhase"] == "Succeeded"
    assert claim["status"]["phase"] == "Bound"
    reasons = [reason for reason, _ in events_of(control_plane, "my-clone")]
    assert "CloneSucceeded" in reasons and "SnapshotForSmartCloneInProgress" in reasons
    control_plane.wait_for(lambda: not leftovers(control_plane, SOURCE_NS), "temporary clone objects to go", 30)
    assert control_plane.get("volumeclonesource", f"volume-clone-source-{dv['metadata']['uid']}", SOURCE_NS) is None


STRATEGY_CLASSES = {"snapshot": "local", "csi-clone": "clone-csi", "copy": "clone-copy"}
DRIVER = "local.csi.pycdi.io"


def wait_bound(plane: ControlPlane, claim: str, namespace: str = "default", timeout: float = 120) -> dict[str, Any]:
    def bound() -> dict[str, Any] | None:
        found = plane.get("pvc", claim, namespace)
        return found if found and (found.get("status") or {}).get("phase") == "Bound" else None
    return dict(plane.wait_for(bound, f"claim {claim} Bound", timeout))


def test_every_strategy_volume_mode_and_namespace(control_plane: ControlPlane, nginx: NginxServer, images: ImageSet,
                                                  source_namespace: str) -> None:
    """strategy × volume mode × same/other namespace, plus the claim-level entry points: a claim naming a
    VolumeCloneSource (CDI's clone populator) and a claim whose dataSource is a claim (the CSI driver)."""
    for name in ("clone-csi", "clone-copy"):
        strategy = "csi-clone" if name == "clone-csi" else "copy"
        control_plane.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                             "metadata": {"name": name, "annotations": {"cdi.kubevirt.io/clone-strategy": strategy}},
                             "provisioner": DRIVER, "allowVolumeExpansion": True})
    modes = {"fs": "Filesystem", "block": "Block"}
    for namespace in (SOURCE_NS, "default"):
        for short, mode in modes.items():
            manifest = golden(f"golden-{short}", nginx.url("disk.qcow2"), mode=mode)
            manifest["metadata"]["namespace"] = namespace
            # A CSI clone stays within one StorageClass (external-provisioner's rule); the other strategies
            # restore or copy into any class.
            manifest["spec"]["storage"]["storageClassName"] = "clone-csi"
            control_plane.apply(manifest)
    for namespace in (SOURCE_NS, "default"):
        for short in modes:
            wait_succeeded(control_plane, f"golden-{short}", namespace)
    clones = {}
    for strategy, class_name in STRATEGY_CLASSES.items():
        for short, mode in modes.items():
            for where, namespace in (("other", SOURCE_NS), ("same", "default")):
                name = f"{class_name}-{short}-{where}"
                dv = clone_dv(name, f"golden-{short}", mode=mode, size="512Mi")
                dv["spec"]["source"]["pvc"]["namespace"] = namespace
                dv["spec"]["storage"]["storageClassName"] = class_name
                control_plane.apply(dv)
                clones[name] = strategy
    control_plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "VolumeCloneSource",
                         "metadata": {"name": "from-golden"},
                         "spec": {"source": {"kind": "PersistentVolumeClaim", "name": "golden-fs"}}})
    populated_ref = {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeCloneSource", "name": "from-golden"}
    csi_ref = {"kind": "PersistentVolumeClaim", "name": "golden-fs"}
    for name, ref, class_name in (("populated", populated_ref, "local"), ("csi-copy", csi_ref, "clone-csi")):
        control_plane.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class_name,
                                      "resources": {"requests": {"storage": "512Mi"}},
                                      "dataSource": ref, "dataSourceRef": ref}})
    for name, strategy in clones.items():
        dv = wait_succeeded(control_plane, name)
        assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == strategy, name
        assert data_of(control_plane, name, "default", images.virtual_size) == images.reference_sha256, name
    for name in ("populated", "csi-copy"):
        wait_bound(control_plane, name)
        assert data_of(control_plane, name, "default", images.virtual_size) == images.reference_sha256, name
    populated = control_plane.get("pvc", "populated")
    assert populated is not None
    assert populated["metadata"]["annotations"]["cdi.kubevirt.io/clonePhase"] == "Succeeded"
    control_plane.wait_for(lambda: not leftovers(control_plane, SOURCE_NS) and not leftovers(control_plane, "default"),
                           "temporary clone objects to go", 30)


@pytest.mark.parametrize(("strategy", "source_mode", "target_mode", "expected_type", "fallback"), [
    ("snapshot", "Filesystem", "Block", "copy", "The volume modes of source and target are incompatible"),
    ("copy", "Block", "Filesystem", "copy", None),
])
def test_each_strategy_copies_the_bytes(control_plane: ControlPlane, nginx: NginxServer, images: ImageSet,
                                        source_namespace: str, strategy: str, source_mode: str, target_mode: str,
                                        expected_type: str, fallback: str | None) -> None:
    control_plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                         "metadata": {"name": "local"}, "spec": {"cloneStrategy": strategy}})
    import_golden(control_plane, nginx, mode=source_mode)
    control_plane.apply(clone_dv("copy-of-golden", "golden", mode=target_mode, size="512Mi"))
    dv = wait_succeeded(control_plane, "copy-of-golden")
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == expected_type
    claim = control_plane.get("pvc", "copy-of-golden")
    assert claim is not None
    assert claim["metadata"]["annotations"].get("cdi.kubevirt.io/cloneFallbackReason") == fallback
    assert data_of(control_plane, "copy-of-golden", "default", images.virtual_size) == images.reference_sha256
    control_plane.wait_for(lambda: not leftovers(control_plane, SOURCE_NS), "temporary clone objects to go", 30)


def test_clone_from_a_volume_snapshot(control_plane: ControlPlane, nginx: NginxServer, images: ImageSet,
                                      source_namespace: str) -> None:
    import_golden(control_plane, nginx)
    control_plane.apply({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                         "metadata": {"name": "golden-snap", "namespace": SOURCE_NS},
                         "spec": {"source": {"persistentVolumeClaimName": "golden"}}})
    control_plane.apply(clone_dv("from-snapshot", "golden-snap", snapshot=True))
    dv = wait_succeeded(control_plane, "from-snapshot")
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == "snapshot"
    assert data_of(control_plane, "from-snapshot", "default", images.virtual_size) == images.reference_sha256
    snapshot = control_plane.get("volumesnapshot", "golden-snap", SOURCE_NS)
    assert snapshot is not None and snapshot["status"]["readyToUse"] is True  # the user's snapshot stays


def test_missing_source_waits_with_an_event_then_clones(control_plane: ControlPlane, nginx: NginxServer,
                                                        images: ImageSet, source_namespace: str) -> None:
    control_plane.apply(clone_dv("early", "not-yet", size="512Mi"))
    control_plane.wait_for(lambda: ("CloneWithoutSource", "The source pvc not-yet doesn't exist")
                           in events_of(control_plane, "early"), "a CloneWithoutSource event", 30)
    assert phase(control_plane, "early") == "Pending"
    import_golden(control_plane, nginx, name="not-yet")
    wait_succeeded(control_plane, "early")
    assert data_of(control_plane, "early", "default", images.virtual_size) == images.reference_sha256


def kill_whenever_the_phase_changes(plane: ControlPlane, name: str, timeout: float = 240,
                                    after_kill: Callable[[], None] | None = None) -> list[str]:
    """SIGKILL `cdi serve` (and start it again) each time the target claim shows a clone phase not seen
    before, until the DataVolume Succeeded; returns the phases it was killed in. `after_kill` runs after
    each restart."""
    killed_in: list[str] = []
    deadline = time.monotonic() + timeout
    while phase(plane, name) != "Succeeded":
        assert time.monotonic() < deadline, f"clone not done after kills in {killed_in}\n{plane.log_tail()}"
        claim = plane.get("pvc", name) or {}
        current = (claim.get("metadata", {}).get("annotations") or {}).get("cdi.kubevirt.io/clonePhase")
        if current and current != "Succeeded" and current not in killed_in:
            plane.stop(signal.SIGKILL)
            killed_in.append(current)
            plane.start()
            if after_kill is not None:
                after_kill()
        time.sleep(0.1)
    return killed_in


class CopyFreezer:
    """Holds a host-assisted copy still long enough to be seen: a thread SIGSTOPs the first upload server
    (the copy's target) the `cdi serve` of `home` starts, as soon as its process exists, until `thaw` —
    once `cdi serve` was killed in the copy's phase. The copy is fast now; a poll through the CLI is not."""

    def __init__(self, home: Path) -> None:
        self._home = str(home.absolute())
        self._group: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CopyFreezer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.thaw()

    def thaw(self) -> None:
        if self._group is not None:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile (its pod was replaced)
                os.killpg(self._group, signal.SIGCONT)

    def _watch(self) -> None:
        while not self._stop.is_set() and self._group is None:
            for entry in Path("/proc").iterdir():
                try:
                    if not entry.name.isdigit() or b"cdi-uploadserver" not in (entry / "cmdline").read_bytes():
                        continue
                    environ = (entry / "environ").read_bytes()
                    if f"PYCDI_POD_RUNNER_STATE={self._home}".encode() in environ.split(b"\0"):
                        self._group = os.getpgid(int(entry.name))
                        os.killpg(self._group, signal.SIGSTOP)
                        return
                except OSError:
                    continue
            time.sleep(0.01)


def fill_with_random(plane: ControlPlane, claim: str, namespace: str, size: int) -> tuple[str, int]:
    """Overwrite the start of a claim's disk.img with `size` random bytes, so that a copy takes a while;
    returns the sha256 of the whole disk.img and its length."""
    disk = plane.volume_path(claim, namespace) / "disk.img"
    with disk.open("r+b") as f:
        for _ in range(size // (16 << 20)):
            f.write(os.urandom(16 << 20))
        f.flush()
        os.fsync(f.fileno())
    length = disk.stat().st_size
    digest = hashlib.sha256()
    with disk.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest(), length


@pytest.mark.parametrize("strategy", ["snapshot", "copy"])
def test_a_control_plane_killed_in_each_phase_finishes_the_clone(control_plane: ControlPlane, nginx: NginxServer,
                                                                 source_namespace: str, strategy: str) -> None:
    control_plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                         "metadata": {"name": "local"}, "spec": {"cloneStrategy": strategy}})
    import_golden(control_plane, nginx)
    expected, length = fill_with_random(control_plane, "golden", SOURCE_NS, 192 << 20)
    with CopyFreezer(control_plane.home) if strategy == "copy" else contextlib.nullcontext() as freezer:
        control_plane.apply(clone_dv("restarted", "golden", size="512Mi"))
        killed_in = kill_whenever_the_phase_changes(control_plane, "restarted",
                                                    after_kill=freezer.thaw if freezer else None)
    assert killed_in, "the clone finished before any phase could be interrupted"
    if strategy == "copy":
        assert "HostClone" in killed_in, killed_in  # killed while the copy ran (it went on, held by its shims)
    assert data_of(control_plane, "restarted", "default", length) == expected
    claim = control_plane.get("pvc", "restarted")
    assert claim is not None and claim["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == strategy
    control_plane.wait_for(lambda: not leftovers(control_plane, SOURCE_NS), "temporary clone objects to go", 30)
    volumes = yaml.safe_load(control_plane.cdi("get", "pv", "-o", "yaml").stdout)["items"]
    assert len(volumes) == 2, [v["metadata"]["name"] for v in volumes]  # the source's and the clone's, no strays


def container_pid(plane: ControlPlane, pod_name: str, namespace: str = "default") -> int | None:
    """The process of a running embedded pod's container (its shim, which leads the process group)."""
    pod: dict[str, Any] | None = plane.get("pod", pod_name, namespace)
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    if not statuses or "running" not in (statuses[0].get("state") or {}):
        return None
    container_id = str(statuses[0].get("containerID") or "")
    return int(container_id.removeprefix("pycdi://")) if container_id.startswith("pycdi://") else None


def stalled_status(plane: ControlPlane, name: str) -> str | None:
    dv = plane.get("dv", name) or {}
    return next((str(c["status"]) for c in (dv.get("status") or {}).get("conditions") or []
                 if c["type"] == "Stalled"), None)


def test_a_class_without_a_csi_driver_falls_back_to_a_host_assisted_copy(
        control_plane: ControlPlane, nginx: NginxServer, images: ImageSet, source_namespace: str) -> None:
    """The provisioner's pre-CSI name has no CSIDriver object: upstream's NoPopulator fallback, a copy straight
    into the target claim (`k8s.io/CloneRequest`). A pod holding the source read-write makes the copy wait
    (CloneSourceInUse, never Stalled); meanwhile the target's upload server is frozen (SIGSTOP), so that once
    the holder goes the copy starts and can move no byte: `cdi get dv -o wide` shows its BYTES and, past the
    DataVolume's own 1 s stall timeout, it is Stalled. Thawed, it finishes with bytes done = total."""
    control_plane.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "in-tree"},
                         "provisioner": "pycdi.local/hostpath"})
    import_golden(control_plane, nginx)
    control_plane.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder", "namespace": SOURCE_NS},
                         "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                                  "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": "golden"}}],
                                  "containers": [{"name": "main", "image": "quay.io/example/app:v1",
                                                  "command": ["sleep", "300"],
                                                  "volumeMounts": [{"name": "disk", "mountPath": "/data"}]}]}})
    dv = clone_dv("legacy", "golden", size="512Mi")
    dv["spec"]["storage"]["storageClassName"] = "in-tree"
    dv["metadata"]["annotations"] = {"pycdi.io/stallTimeout": "1s"}
    control_plane.apply(dv)
    control_plane.wait_for(lambda: ("CloneSourceInUse", f"pod {SOURCE_NS}/holder using PersistentVolumeClaim golden")
                           in events_of(control_plane, "legacy"), "CloneSourceInUse", 60)
    upload_server = control_plane.wait_for(lambda: container_pid(control_plane, "cdi-upload-legacy"),
                                           "the upload server running", 60)
    os.killpg(upload_server, signal.SIGSTOP)
    try:
        assert stalled_status(control_plane, "legacy") is None  # waiting for its source is not stalling
        control_plane.cdi("delete", "pod", "holder", "-n", SOURCE_NS, "--timeout=60s")
        control_plane.wait_for(lambda: wide_row(control_plane, "legacy").get("BYTES", "").startswith("0/"),
                               "BYTES of the frozen copy", 60)
        control_plane.wait_for(lambda: stalled_status(control_plane, "legacy") == "True", "Stalled", 60)
    finally:
        os.killpg(upload_server, signal.SIGCONT)
    done = wait_succeeded(control_plane, "legacy")
    progress = {k.removeprefix("pycdi.io/transfer."): v for k, v in done["metadata"]["annotations"].items()
                if k.startswith("pycdi.io/transfer.")}
    assert progress.keys() == {"bytesDone", "bytesTotal"} and progress["bytesDone"] == progress["bytesTotal"], progress
    assert 0 < int(progress["bytesTotal"]) < images.virtual_size  # the golden's data extents, not its holes
    assert stalled_status(control_plane, "legacy") == "False"
    assert "TransferStalled" in {reason for reason, _ in events_of(control_plane, "legacy")}
    assert done["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == "copy"
    claim = control_plane.get("pvc", "legacy")
    assert claim is not None
    notes = claim["metadata"]["annotations"]
    assert notes["cdi.kubevirt.io/cloneFallbackReason"] == "In tree storage class does not support snapshot/clone"
    assert notes["k8s.io/CloneOf"] == "true"
    assert ("NoPopulator", "In tree storage class does not support snapshot/clone") in events_of(control_plane,
                                                                                                  "legacy")
    assert data_of(control_plane, "legacy", "default", images.virtual_size) == images.reference_sha256


def test_sourceref_waits_for_its_datasource_then_clones_the_golden_image(
        control_plane: ControlPlane, nginx: NginxServer, images: ImageSet, source_namespace: str) -> None:
    control_plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
                         "metadata": {"name": "fedora", "namespace": SOURCE_NS},
                         "spec": {"source": {"pvc": {"name": "golden", "namespace": SOURCE_NS}}}})
    control_plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "vm-root"},
                         "spec": {"sourceRef": {"kind": "DataSource", "name": "fedora", "namespace": SOURCE_NS},
                                  "storage": {}}})

    def not_ready_said() -> bool:
        return any(reason == "DataSourceNotReady" and "PVC not found" in message
                   for reason, message in events_of(control_plane, "vm-root"))
    control_plane.wait_for(not_ready_said, "a DataSourceNotReady event", 30)
    assert phase(control_plane, "vm-root") == "Pending"
    import_golden(control_plane, nginx)
    dv = wait_succeeded(control_plane, "vm-root")
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"] == "snapshot"
    assert data_of(control_plane, "vm-root", "default", images.virtual_size) == images.reference_sha256
    data_source = control_plane.get("datasource", "fedora", SOURCE_NS)
    assert data_source is not None
    assert data_source["status"]["conditions"][0]["reason"] == "Ready"
    assert data_source["status"]["source"] == {"pvc": {"namespace": SOURCE_NS, "name": "golden"}}
