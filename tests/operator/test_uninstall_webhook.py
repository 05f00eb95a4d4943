"""cdi-apiserver's cdi-validate webhook over loopback TLS: a DELETE of the CDI resource is refused with
upstream's message while `BlockUninstallIfWorkloadsExist` is set and a DataVolume exists, and allowed
otherwise. The embedded store plays the API server the webhook lists DataVolumes from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.protocol import Object
from cdi.embedded.reviews import DEFAULT_REVIEWS
from tests.apiserver.test_server import Served, serve
from tests.support.tls import TestPKI

REFUSAL = ("Rejecting the uninstall request, since there are still DataVolumes present. Either delete all "
           "DataVolumes or change the uninstall strategy before uninstalling CDI.")


@pytest.fixture
async def server(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, pki, dict(DEFAULT_REVIEWS)):
        yield served


def cdi(phase: str = "Deployed", **spec: Any) -> Object:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": {"name": "cdi", "uid": "u"},
            "spec": spec, "status": {"phase": phase}}


def delete_review(old: Object | None) -> Object:
    request: Object = {"uid": "r-1", "kind": {"group": "cdi.kubevirt.io", "version": "v1beta1", "kind": "CDI"},
                       "resource": {"group": "cdi.kubevirt.io", "version": "v1beta1", "resource": "cdis"},
                       "operation": "DELETE", "name": "cdi", "object": None}
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def add_dv(served: Served) -> None:
    await served.cluster.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                                 "metadata": {"name": "vm-disk", "namespace": "vms"},
                                 "spec": {"source": {"blank": {}},
                                          "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})


async def test_delete_is_refused_while_datavolumes_exist(server: Served) -> None:
    await add_dv(server)
    status, answer = await server.call("POST", "/cdi-validate",
                                       delete_review(cdi(uninstallStrategy="BlockUninstallIfWorkloadsExist")))
    assert status == 200 and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == REFUSAL
    assert answer["response"]["status"]["code"] == 400


async def test_delete_without_old_object_reads_the_stored_cdi(server: Served) -> None:
    await add_dv(server)
    await server.cluster.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": {"name": "cdi"},
                                 "spec": {"uninstallStrategy": "BlockUninstallIfWorkloadsExist"}})
    await server.cluster.patch("cdi.kubevirt.io/v1beta1", "CDI", "cdi", {"status": {"phase": "Deployed"}})
    status, answer = await server.call("POST", "/cdi-validate", delete_review(None))
    assert status == 200 and answer["response"]["allowed"] is False and answer["response"]["status"]["message"] == REFUSAL


@pytest.mark.parametrize(("old", "with_dv"), [
    (cdi(uninstallStrategy="BlockUninstallIfWorkloadsExist"), False),  # nothing to protect
    (cdi(uninstallStrategy="RemoveWorkloads"), True),
    (cdi(), True),  # unset: RemoveWorkloads
    (cdi("Error", uninstallStrategy="BlockUninstallIfWorkloadsExist"), True),  # never installed
    (cdi("", uninstallStrategy="BlockUninstallIfWorkloadsExist"), True),
])
async def test_delete_is_allowed_otherwise(server: Served, old: Object, with_dv: bool) -> None:
    if with_dv:
        await add_dv(server)
    status, answer = await server.call("POST", "/cdi-validate", delete_review(old))
    assert status == 200 and answer["response"] == {"uid": "r-1", "allowed": True}
