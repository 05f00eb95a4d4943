"""The env/path mapping table: where a container's in-pod paths are here, and what tells the process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdi.embedded.pods.layout import ContainerLayout, LayoutError, Link, LocalVolume, container_layout
from cdi.embedded.pods.spec import parse_pod

ROOT = Path("/state/pods/ns/p/root/main")
TERMINATION = Path("/state/pods/ns/p/termination/main")
PV = Path("/pools/pv-1")
SCRATCH = Path("/pools/pv-2")
LOOP = Path("/dev/loop7")
HEADERS = Path("/state/pods/ns/p/volumes/headers-0")
PROXY = Path("/state/pods/ns/p/volumes/proxy")
CERTS = Path("/state/pods/ns/p/volumes/certs")

VOLUMES = {
    "data": LocalVolume(PV), "scratch": LocalVolume(SCRATCH), "block": LocalVolume(LOOP, block=True),
    "headers-0": LocalVolume(HEADERS, materialised=True), "proxy": LocalVolume(PROXY, materialised=True),
    "certs": LocalVolume(CERTS, materialised=True),
}


def layout(mounts: list[tuple[str, str]], devices: list[tuple[str, str]] | None = None,
           **container: object) -> ContainerLayout:
    spec = {"name": "main", "volumeMounts": [{"name": n, "mountPath": p} for n, p in mounts],
            "volumeDevices": [{"name": n, "devicePath": p} for n, p in devices or ()], **container}
    pod = parse_pod({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [spec]}})
    return container_layout(pod.containers[0], VOLUMES, root=ROOT, termination_file=TERMINATION, pod_ip="127.1.0.9")


@pytest.mark.parametrize(("mounts", "devices", "expected"), [
    # Filesystem import: /data and /scratch.
    ([("data", "/data"), ("scratch", "/scratch")], [],
     {"CDI_DATA_PATH": str(PV), "CDI_SCRATCH_PATH": str(SCRATCH)}),
    # Block import: the device is the data path, whatever else is mounted.
    ([("scratch", "/scratch")], [("block", "/dev/cdi-block-volume")],
     {"CDI_DATA_PATH": str(LOOP), "CDI_SCRATCH_PATH": str(SCRATCH)}),
    # Secret extra headers under /extraheaders/<n>: the parent maps into the container root.
    ([("data", "/data"), ("headers-0", "/extraheaders/secret0")], [],
     {"CDI_DATA_PATH": str(PV), "CDI_EXTRA_HEADERS_DIR": str(ROOT / "extraheaders")}),
    # A volume right at /extraheaders.
    ([("headers-0", "/extraheaders")], [], {"CDI_EXTRA_HEADERS_DIR": str(HEADERS)}),
    # The proxy CA bundle at /proxycerts/ keeps its trailing slash.
    ([("proxy", "/proxycerts/")], [], {"IMPORTER_PROXY_CERT_DIR": f"{PROXY}/"}),
    # Nothing mounted: only the termination log and the metrics address.
    ([], [], {}),
])
def test_well_known_paths_map_to_variables(mounts: list[tuple[str, str]], devices: list[tuple[str, str]],
                                           expected: dict[str, str]) -> None:
    assert dict(layout(mounts, devices).env) == {
        **expected, "CDI_TERMINATION_LOG": str(TERMINATION), "CDI_METRICS_ADDR": "127.1.0.9:8443"}


@pytest.mark.parametrize(("value", "expected"), [
    ("/certs", str(CERTS)),
    ("/certs/", f"{CERTS}/"),
    ("/certs/ca.pem", f"{CERTS}/ca.pem"),
    ("/certsx", "/certsx"),  # a prefix of the name is not a parent directory
    ("/data/disk.img", f"{PV}/disk.img"),
    ("/dev/termination-log", str(TERMINATION)),
    ("/extraheaders", str(ROOT / "extraheaders")),
    ("/extraheaders/secret0/h", f"{HEADERS}/h"),
    ("/usr/bin/true", "/usr/bin/true"),
    ("relative/data", "relative/data"),
    ("/", "/"),
    ("http://example.com/data", "http://example.com/data"),
])
def test_values_under_mount_paths_are_rewritten(value: str, expected: str) -> None:
    mapped = layout([("certs", "/certs"), ("data", "/data"), ("headers-0", "/extraheaders/secret0")])
    assert mapped.rewrite(value) == expected


def test_sub_path_and_custom_termination_path() -> None:
    spec = layout([], terminationMessagePath="/tmp/done")
    assert spec.rewrite("/tmp/done") == str(TERMINATION)
    pod = parse_pod({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "main", "volumeMounts": [{"name": "data", "mountPath": "/work", "subPath": "sub/dir"}]}]}})
    mapped = container_layout(pod.containers[0], VOLUMES, root=ROOT, termination_file=TERMINATION, pod_ip="")
    assert mapped.rewrite("/work/x") == f"{PV}/sub/dir/x"
    assert "CDI_METRICS_ADDR" not in mapped.env  # no pod IP, no address


def test_links_show_each_mount_point_in_the_container_root() -> None:
    mapped = layout([("data", "/data"), ("headers-0", "/extraheaders/secret0"), ("scratch", "/data/nested")],
                    [("block", "/dev/cdi-block-volume")])
    assert mapped.links == (
        Link(ROOT / "data", PV),  # /data/nested is not linked: it would land inside the /data volume
        Link(ROOT / "dev/cdi-block-volume", LOOP),
        Link(ROOT / "extraheaders/secret0", HEADERS, copy=True),  # materialised: copied as hard links
    )


@pytest.mark.parametrize(("mounts", "devices", "message"), [
    ([("block", "/data")], [], 'volume "block" has volumeMode Block'),
    ([], [("data", "/dev/cdi-block-volume")], 'volume "data" has volumeMode Filesystem'),
    ([("missing", "/data")], [], 'volume "missing" mounted at /data is not a volume of the pod'),
    ([("data", "data")], [], "must be absolute"),
])
def test_mounts_that_do_not_fit_the_volumes_are_refused(mounts: list[tuple[str, str]],
                                                        devices: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        layout(mounts, devices)
