"""Registry DataVolumes end to end through the real CLI and a real `cdi serve`: the seeds' registry
DataVolume (`secretRef` + `certConfigMap`) against a TLS registry with basic auth, with the Secret and
the CA ConfigMap created as the seeds create them; a host listed in CDIConfig `insecureRegistries`;
and `pullMethod: node`, which the embedded mode refuses with a clear, final reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_datavolume_import import sha256_prefix
from tests.registry import images as oci
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.registry import RegistryServer, htpasswd_line
from tests.support.tls import TestPKI

pytestmark = pytest.mark.slow
USER, PASSWORD = "registry-user", "registry-pass"

# Seed 6.2.2.x: the Secret (values filled in) and the CA ConfigMap (`oc create configmap tls-certs
# --from-file=ca.pem`), then the VM's DataVolume template, with the URL pointing at the local registry.
SEED_SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: data-source-secret
  labels:
    app: containerized-data-importer
type: Opaque
data:
  accessKeyId: "{user}"
  secretKey: "{password}"
"""
SEED_REGISTRY_DV = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: fedora-dv
spec:
  storage:
    resources:
      requests:
        storage: 10Gi
    storageClassName: local
  source:
    registry:
      url: "docker://{host}/disks/fedora:latest"
      secretRef: data-source-secret
      certConfigMap: tls-certs
"""
PLAIN_REGISTRY_DV = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: {name}
spec:
  storage:
    resources:
      requests:
        storage: 128Mi
    storageClassName: local
  source:
    registry:
      url: "docker://{host}/disks/fedora:latest"
      pullMethod: {method}
"""


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, images: ImageSet
               ) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    """(TLS + htpasswd, plain HTTP) over one storage holding the seeds' container disk."""
    storage = tmp_path_factory.mktemp("e2e-registry")
    workdir = tmp_path_factory.mktemp("e2e-registry-work")
    (workdir / "htpasswd").write_text(htpasswd_line(USER, PASSWORD))
    with RegistryServer(storage, workdir / "plain") as plain:
        disk = oci.layer({"disk/disk.qcow2": images.path("disk.qcow2")})
        env = ("INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora",)  # as KubeVirt's containerdisks declare it
        oci.Pusher(plain.base_url).image("disks/fedora", "latest", oci.image([disk], env=env))
        with RegistryServer(storage, workdir / "secure", tls=pki, htpasswd=workdir / "htpasswd") as secure:
            yield secure, plain


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ca_configmap(ca: Path) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tls-certs", "namespace": "default"},
            "data": {"ca.pem": ca.read_text()}}


def _all_in(plane: ControlPlane, phases: dict[str, str]) -> dict[str, Any] | None:
    """The DataVolumes by name once each is in its phase (one `cdi get` per poll: the CLI is not free)."""
    listed = json.loads(plane.cdi("get", "dv", "-o", "json").stdout).get("items") or []
    by_name = {dv["metadata"]["name"]: dv for dv in listed}
    done = all((by_name.get(name, {}).get("status") or {}).get("phase") == phase for name, phase in phases.items())
    return by_name if done else None


def test_registry_datavolumes(control_plane: ControlPlane, images: ImageSet, pki: TestPKI,
                              registries: tuple[RegistryServer, RegistryServer]) -> None:
    """Three DataVolumes at once, to share one control plane: the seeds' (TLS, basic auth, CA ConfigMap),
    one on a plain-HTTP registry that CDIConfig lists as insecure, and one asking for node pull."""
    secure, plain = registries
    config = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig", "metadata": {"name": "config"},
              "spec": {"insecureRegistries": [plain.host]}}
    control_plane.apply("---\n".join([  # one `cdi apply` of several documents, in this order
        yaml.safe_dump(config), SEED_SECRET.format(user=_b64(USER), password=_b64(PASSWORD)),
        yaml.safe_dump(_ca_configmap(pki.ca_cert)), SEED_REGISTRY_DV.format(host=secure.host),
        PLAIN_REGISTRY_DV.format(name="insecure-dv", host=plain.host, method="pod"),
        PLAIN_REGISTRY_DV.format(name="node-dv", host=plain.host, method="node")]))

    final = {"fedora-dv": "Succeeded", "insecure-dv": "Succeeded", "node-dv": "Failed"}
    dvs = control_plane.wait_for(lambda: _all_in(control_plane, final), f"DataVolumes to be {final}")
    for name in ("fedora-dv", "insecure-dv"):
        assert dvs[name]["status"]["progress"] == "100.0%"
        disk = control_plane.volume_path(name) / "disk.img"
        assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
        # The image's default preference reaches the PVC and the DataVolume, as upstream copies it.
        assert dvs[name]["metadata"]["labels"]["instancetype.kubevirt.io/default-preference"] == "fedora"
        pvc = json.loads(control_plane.cdi("get", "pvc", name, "-o", "json").stdout)
        assert pvc["metadata"]["labels"]["instancetype.kubevirt.io/default-preference"] == "fedora"
    running = next(c for c in dvs["node-dv"]["status"]["conditions"] if c["type"] == "Running")
    assert running["reason"] == "InvalidConfiguration"
    assert running["message"].startswith("pullMethod: node needs a container runtime on the node")
    assert "Use pullMethod: pod" in running["message"]
