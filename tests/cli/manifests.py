"""Manifests the CLI tests apply, in the style of the docs seed's DataVolume examples."""

from __future__ import annotations

from typing import Any

from cdi.cluster.protocol import Object

HTTP_DV = """\
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: fedora
  labels:
    app: vm
spec:
  source:
    http:
      url: https://download.example.com/fedora.qcow2
  storage:
    resources:
      requests:
        storage: 10Gi
"""

BLANK_DV = """\
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: blank-dv
spec:
  source:
    blank: {}
  storage:
    resources:
      requests:
        storage: 500Mi
"""

INVALID_DV = """\
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: broken
spec:
  source:
    http:
      url: ftp://example.com/disk.img
  pvc:
    accessModes: [ReadWriteOnce]
  storage:
    resources:
      requests:
        storage: 1Gi
"""


def datavolume(name: str, namespace: str = "default", **metadata: Any) -> Object:
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
    }


def pod(name: str, containers: tuple[str, ...] = ("importer",), namespace: str = "default") -> Object:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": c, "image": "cdi-importer"} for c in containers]}}
