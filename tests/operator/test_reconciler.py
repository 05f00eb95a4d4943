"""The operator's reconciler with the embedded installer (what `cdi serve` runs), on both backends.

Each test drives `OperatorReconciler.reconcile` itself, as the work queue would (again at once while it
asks to be requeued with no delay), and checks what a user sees: the CR's phase, conditions, versions and
finalizer, the `cdi-config` ConfigMap it controls, CDIConfig's spec, the events, and which DataVolumes
and worker pods survive an uninstall.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.operator.installer import EmbeddedInstaller
from cdi.operator.reconciler import OperatorReconciler
from cdi.runtime.types import Key
from tests.operator.conftest import CDI_API, NAMESPACE, StepClock

VERSION = "v1.0.0"
CONFIG = {"featureGates": ["HonorWaitForFirstConsumer"], "scratchSpaceStorageClass": "fast",
          "filesystemOverhead": {"global": "0.1"}}


def reconciler(cluster: Cluster, clock: StepClock, version: str = VERSION) -> OperatorReconciler:
    return OperatorReconciler(cluster, clock, EmbeddedInstaller(), namespace=NAMESPACE, version=version)


async def settle(cluster: Cluster, clock: StepClock, name: str = "cdi", version: str = VERSION) -> None:
    """Reconcile until the reconciler stops asking for an immediate retry."""
    for _ in range(10):
        result = await reconciler(cluster, clock, version).reconcile(Key("", name))
        if result.requeue_after != 0.0:
            return
    raise AssertionError("the reconciler kept asking to run again")


async def create_cdi(cluster: Cluster, name: str = "cdi", **spec: Any) -> Object:
    return await cluster.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": name}, "spec": spec})


async def get_cdi(cluster: Cluster, name: str = "cdi") -> Object:
    return await cluster.get(CDI_API, "CDI", name)


def conditions(cdi: Object) -> dict[str, tuple[str, str | None, str | None]]:
    return {c["type"]: (c["status"], c.get("reason"), c.get("message")) for c in cdi["status"]["conditions"]}


async def events(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    listed = (await cluster.list("v1", "Event", "default")).items
    return sorted((e["type"], e["reason"], e["message"]) for e in listed
                  if e["involvedObject"].get("kind") == "CDI" and e["involvedObject"]["name"] == name)


async def create_dv(cluster: Cluster, name: str) -> None:
    await cluster.create({"apiVersion": CDI_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": "default"},
                          "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})


async def gone(cluster: Cluster, api_version: str, kind: str, name: str, namespace: str | None = None,
               timeout: float = 30.0) -> bool:
    """Whether the object disappears within `timeout` (a real cluster's garbage collector takes a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            await cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_cdi_resource_is_deployed_and_its_config_lands_in_cdiconfig(cluster: Cluster,
                                                                             clock: StepClock) -> None:
    await create_cdi(cluster, config=CONFIG, cloneStrategyOverride="copy")
    await settle(cluster, clock)
    cdi = await get_cdi(cluster)
    assert cdi["metadata"]["finalizers"] == ["operator.cdi.kubevirt.io"]
    assert "cdi.kubevirt.io/configAuthority" in cdi["metadata"]["annotations"]
    assert cdi["status"]["phase"] == "Deployed"
    assert {k: cdi["status"][k] for k in ("operatorVersion", "targetVersion", "observedVersion")} == \
        dict.fromkeys(("operatorVersion", "targetVersion", "observedVersion"), VERSION)
    assert conditions(cdi) == {"Available": ("True", "DeployCompleted", "Deployment Completed"),
                               "Progressing": ("False", None, None), "Degraded": ("False", None, None)}
    config_map = await cluster.get("v1", "ConfigMap", "cdi-config", NAMESPACE)
    assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in config_map["metadata"]["ownerReferences"]] \
        == [("CDI", "cdi", cdi["metadata"]["uid"], True)]
    assert (await cluster.get(CDI_API, "CDIConfig", "config"))["spec"] == CONFIG
    assert await events(cluster, "cdi") == [("Normal", "DeployCompleted", "Deployment Completed"),
                                            ("Normal", "DeployStarted", "Started Deployment")]
    # A settled installation writes nothing more.
    version = cdi["metadata"]["resourceVersion"]
    await settle(cluster, clock)
    assert (await get_cdi(cluster))["metadata"]["resourceVersion"] == version


async def test_a_change_of_spec_config_replaces_cdiconfigs_spec(cluster: Cluster, clock: StepClock) -> None:
    await create_cdi(cluster, config=CONFIG)
    await settle(cluster, clock)
    await cluster.patch(CDI_API, "CDI", "cdi", {"spec": {"config": {"scratchSpaceStorageClass": None,
                                                                    "featureGates": None}}})
    await settle(cluster, clock)
    assert (await cluster.get(CDI_API, "CDIConfig", "config"))["spec"] == {"filesystemOverhead": {"global": "0.1"}}


async def test_an_existing_cdiconfig_spec_is_kept_by_taking_it_into_the_cr(cluster: Cluster,
                                                                           clock: StepClock) -> None:
    await cluster.create({"apiVersion": CDI_API, "kind": "CDIConfig", "metadata": {"name": "config"},
                          "spec": {"scratchSpaceStorageClass": "local"}})
    await create_cdi(cluster)
    await settle(cluster, clock)
    assert (await get_cdi(cluster))["spec"]["config"] == {"scratchSpaceStorageClass": "local"}
    assert (await cluster.get(CDI_API, "CDIConfig", "config"))["spec"] == {"scratchSpaceStorageClass": "local"}


async def test_a_second_cdi_resource_goes_to_error(cluster: Cluster, clock: StepClock) -> None:
    await create_cdi(cluster)
    await settle(cluster, clock)
    await create_cdi(cluster, "cdi-2")
    await settle(cluster, clock, "cdi-2")
    second = await get_cdi(cluster, "cdi-2")
    assert second["status"]["phase"] == "Error"
    assert conditions(second)["Degraded"] == ("True", "ConfigError", "Reconciling to error state, unwanted CDI object")
    assert not second["metadata"].get("finalizers")
    assert await events(cluster, "cdi-2") == [("Warning", "ConfigError",
                                               "Reconciling to error state, unwanted CDI object")]
    assert (await get_cdi(cluster))["status"]["phase"] == "Deployed"  # the active one is untouched


async def test_an_upgrade_passes_through_upgrading_and_a_downgrade_is_refused(cluster: Cluster,
                                                                              clock: StepClock) -> None:
    await create_cdi(cluster)
    await settle(cluster, clock)
    await settle(cluster, clock, version="v1.1.0")
    cdi = await get_cdi(cluster)
    assert (cdi["status"]["phase"], cdi["status"]["observedVersion"]) == ("Deployed", "v1.1.0")
    assert ("Normal", "UpgradeStarted", "Started upgrade to version v1.1.0") in await events(cluster, "cdi")
    await settle(cluster, clock, version="v1.0.0")
    cdi = await get_cdi(cluster)
    assert cdi["status"]["observedVersion"] == "v1.1.0"
    assert conditions(cdi)["Degraded"] == ("True", "DowngradeRefused", "operator downgraded, will not reconcile")


async def test_block_uninstall_keeps_the_cr_while_datavolumes_exist(cluster: Cluster, clock: StepClock) -> None:
    await create_cdi(cluster, uninstallStrategy="BlockUninstallIfWorkloadsExist")
    await settle(cluster, clock)
    await create_dv(cluster, "keep-me")
    await cluster.delete(CDI_API, "CDI", "cdi")
    await settle(cluster, clock)
    cdi = await get_cdi(cluster)
    assert cdi["metadata"]["finalizers"] == ["operator.cdi.kubevirt.io"]
    refusal = ("Rejecting the uninstall request, since there are still DataVolumes present. Either delete all "
               "DataVolumes or change the uninstall strategy before uninstalling CDI.")
    assert conditions(cdi)["Degraded"] == ("True", "UninstallBlocked", refusal)
    assert ("Warning", "UninstallBlocked", refusal) in await events(cluster, "cdi")
    assert (await cluster.get(CDI_API, "DataVolume", "keep-me", "default"))["metadata"].get("deletionTimestamp") is None
    # Once the DataVolume is gone, the uninstall goes on.
    await cluster.delete(CDI_API, "DataVolume", "keep-me", "default")
    assert await gone(cluster, CDI_API, "DataVolume", "keep-me", "default")
    await settle(cluster, clock)
    assert await gone(cluster, CDI_API, "CDI", "cdi")


async def test_remove_workloads_deletes_datavolumes_and_worker_pods(cluster: Cluster, clock: StepClock) -> None:
    await create_cdi(cluster, uninstallStrategy="RemoveWorkloads")
    await settle(cluster, clock)
    await create_dv(cluster, "doomed")
    for name, component in (("importer-doomed", "importer"), ("bystander", "something-else")):
        await cluster.create({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": name, "namespace": "default",
                                           "labels": {"cdi.kubevirt.io": component}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    await cluster.delete(CDI_API, "CDI", "cdi")
    await settle(cluster, clock)
    assert await gone(cluster, CDI_API, "CDI", "cdi")
    assert await gone(cluster, CDI_API, "DataVolume", "doomed", "default")
    assert await gone(cluster, "v1", "Pod", "importer-doomed", "default")
    assert await gone(cluster, "v1", "ConfigMap", "cdi-config", NAMESPACE)  # garbage-collected with its owner
    await cluster.get("v1", "Pod", "bystander", "default")  # not a worker: left alone


async def test_after_uninstall_a_new_cr_installs_again(cluster: Cluster, clock: StepClock) -> None:
    await create_cdi(cluster)
    await settle(cluster, clock)
    await cluster.delete(CDI_API, "CDI", "cdi")
    await settle(cluster, clock)
    assert await gone(cluster, "v1", "ConfigMap", "cdi-config", NAMESPACE)
    await create_cdi(cluster, "cdi-again")
    await settle(cluster, clock, "cdi-again")
    assert (await get_cdi(cluster, "cdi-again"))["status"]["phase"] == "Deployed"


async def test_cluster_only_settings_are_reported_as_ignored_by_the_embedded_installer(cluster: Cluster,
                                                                                       clock: StepClock) -> None:
    await create_cdi(cluster, infra={"nodeSelector": {"disk": "ssd"}}, imagePullPolicy="Always")
    await settle(cluster, clock)
    cdi = await get_cdi(cluster)
    assert cdi["status"]["phase"] == "Deployed"
    status, reason, message = conditions(cdi)["Degraded"]
    assert (status, reason) == ("True", "CustomizationRefused")
    assert message is not None and "spec.infra, spec.imagePullPolicy" in message


async def test_an_installed_cr_is_reconciled_again_after_the_resync_interval(cluster: Cluster,
                                                                             clock: StepClock) -> None:
    await create_cdi(cluster)
    await settle(cluster, clock)
    await create_cdi(cluster, "cdi-2")
    await settle(cluster, clock, "cdi-2")
    resyncing = OperatorReconciler(cluster, clock, EmbeddedInstaller(), namespace=NAMESPACE, version=VERSION,
                                   resync=600.0)
    assert (await resyncing.reconcile(Key("", "cdi"))).requeue_after == 600.0
    assert (await resyncing.reconcile(Key("", "cdi-2"))).requeue_after is None  # an unwanted CR waits for events
