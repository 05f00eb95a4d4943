"""Volumes as paths: Secrets and ConfigMaps materialised, claims bound to PVs, WaitForFirstConsumer scheduling."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.controller import controllers
from cdi.embedded.pods.paths import PodPaths, log_path
from cdi.embedded.pods.processes import Launcher
from cdi.embedded.pods.projection import project
from cdi.embedded.pods.runner import PodRunner
from cdi.embedded.pods.spec import KeyToPath, Volume, parse_pod
from cdi.embedded.pods.volumes import VolumeError, key_data, prepare_volumes, volume_files
from cdi.runtime.types import Key
from tests.pods.support import (
    NAMESPACE,
    bind,
    both_runtimes,
    claim,
    config_map,
    container,
    container_status,
    phase,
    pod,
    py,
    running,
    secret,
    settle,
    storage_class,
    waiting_reason,
)

# Reports what it sees as JSON in its termination message: selected variables and the files under
# the directories named by IMPORTER_CERT_DIR and CDI_EXTRA_HEADERS_DIR (path -> [mode, content]), read
# as a program reads kubelet's Secret volumes: through their links, skipping the hidden `..data` versions.
INSPECT = """
import json, os
report = {name: os.environ.get(name) for name in ("ACCESS", "POD", "NS", "IP", "CDI_METRICS_ADDR")}
for variable in ("IMPORTER_CERT_DIR", "CDI_EXTRA_HEADERS_DIR"):
    root = os.environ[variable]
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        for name in files:
            path = os.path.join(directory, name)
            report[variable + ":" + os.path.relpath(path, root)] = [oct(os.stat(path).st_mode & 0o777),
                                                                  open(path).read()]
open(os.environ["CDI_TERMINATION_LOG"], "w").write(json.dumps(report))
"""


@both_runtimes
async def test_secrets_and_config_maps_become_files_and_variables(cluster: EmbeddedCluster,
                                                                  runner: PodRunner) -> None:
    await cluster.create(secret("creds", {"accessKeyId": b"AKIA", "secretKey": b"s3cr3t"}))
    await cluster.create(secret("headers", {"h1": b"X-Token: abc"}))
    await cluster.create(config_map("ca", {"ca.pem": "PEM", "other.pem": "ignored"}))
    spec = container(command=py(INSPECT), env=[
        {"name": "ACCESS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "accessKeyId"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "IMPORTER_CERT_DIR", "value": "/certs"}],
        volumeMounts=[{"name": "cert-vol", "mountPath": "/certs"},
                      {"name": "headers-vol", "mountPath": "/extraheaders/secret0"}])
    volumes = [{"name": "cert-vol", "configMap": {"name": "ca", "items": [{"key": "ca.pem", "path": "ca/ca.pem"}],
                                                  "defaultMode": 0o440}},
               {"name": "headers-vol", "secret": {"secretName": "headers"}}]
    await cluster.create(pod("inspect", spec, volumes=volumes))
    done = await settle(runner, cluster, "inspect", phase("Succeeded", "Failed"))
    assert done is not None
    terminated = container_status(done)["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    report = json.loads(terminated["message"])
    ip = done["status"]["podIP"]
    assert report == {
        "ACCESS": "AKIA", "POD": "inspect", "NS": NAMESPACE, "IP": ip, "CDI_METRICS_ADDR": f"{ip}:8443",
        "IMPORTER_CERT_DIR:ca/ca.pem": ["0o440", "PEM"],  # items and defaultMode honoured
        "CDI_EXTRA_HEADERS_DIR:secret0/h1": ["0o644", "X-Token: abc"],  # /extraheaders/<n> as upstream mounts it
    }


# Prints the file argv[1] each time it changes; exits once it reads argv[2].
FOLLOW = """
import sys, time
seen = None
while True:
    try:
        text = open(sys.argv[1]).read()
    except OSError:
        text = None
    if text != seen:
        print(text, flush=True)
        seen = text
    if text == sys.argv[2]:
        break
    time.sleep(0.05)
"""


@both_runtimes
async def test_a_running_container_sees_its_secret_change(cluster: EmbeddedCluster, state_dir: Path,
                                                          launcher: Launcher | None) -> None:
    runner = PodRunner(cluster, state_dir, retry_after=0.2, launcher=launcher, refresh_after=0.2)
    try:
        await cluster.create(secret("serving", {"tls.crt": b"first certificate"}))
        await cluster.create(pod("server", container(command=[*py(FOLLOW), "/certs/tls.crt", "rotated certificate"],
                                                     volumeMounts=[{"name": "certs", "mountPath": "/certs"}]),
                                 volumes=[{"name": "certs", "secret": {"secretName": "serving"}}]))
        await settle(runner, cluster, "server", running())
        log = log_path(state_dir, NAMESPACE, "server", "main")
        await settle(runner, cluster, "server", lambda _: log.exists() and "first certificate" in log.read_text())
        rotated = await cluster.get("v1", "Secret", "serving", NAMESPACE)
        rotated["data"] = {"tls.crt": base64.b64encode(b"rotated certificate").decode()}
        await cluster.update(rotated)
        done = await settle(runner, cluster, "server", phase("Succeeded", "Failed"))
        assert done is not None and done["status"]["phase"] == "Succeeded"  # the same run read the new file
        assert container_status(done)["restartCount"] == 0
        assert log.read_text() == "first certificate\nrotated certificate\n"
    finally:
        await runner.close()


def test_projected_files_change_in_one_step_and_only_when_they_differ(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    assert project(directory, [("tls.crt", b"one", 0o640), ("nested/ca.pem", b"ca", 0o644)])
    inode = directory.stat().st_ino
    assert not project(directory, [("nested/ca.pem", b"ca", 0o644), ("tls.crt", b"one", 0o640)])  # same files
    assert (directory / "tls.crt").read_bytes() == b"one" and (directory / "nested" / "ca.pem").read_bytes() == b"ca"
    assert oct((directory / "tls.crt").stat().st_mode & 0o777) == "0o640"
    assert project(directory, [("tls.crt", b"two", 0o640)])
    assert directory.stat().st_ino == inode  # the directory itself stays: a bind mount keeps seeing it
    assert (directory / "tls.crt").read_bytes() == b"two"
    assert not (directory / "nested").exists()  # a name the new version lacks is gone
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith("..")) == \
        sorted(["..data", str((directory / "..data").readlink())])  # one version kept


@both_runtimes
async def test_a_missing_secret_holds_the_container_until_it_exists(cluster: EmbeddedCluster,
                                                                    runner: PodRunner) -> None:
    echo = "import os; open(os.environ['CDI_TERMINATION_LOG'], 'w').write(os.environ['KEY'])"
    await cluster.create(pod("needs-secret", container(command=py(echo), env=[
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "late", "key": "k"}}}])))
    waiting = await settle(runner, cluster, "needs-secret", waiting_reason("CreateContainerConfigError"))
    assert waiting is not None and waiting["status"]["phase"] == "Pending"
    assert container_status(waiting)["state"]["waiting"]["message"] == 'secret "late" not found'
    await cluster.create(secret("late", {"k": b"finally"}))
    done = await settle(runner, cluster, "needs-secret", phase("Succeeded"))
    assert container_status(done)["state"]["terminated"]["message"] == "finally"


@both_runtimes
async def test_wait_for_first_consumer_claims_get_the_node_and_the_pod_waits(cluster: EmbeddedCluster,
                                                                             runner: PodRunner,
                                                                             tmp_path: Path) -> None:
    await cluster.create(storage_class("local"))
    await cluster.create(claim("target"))
    write = ("import os; p = os.environ['CDI_DATA_PATH']; "
             "open(os.path.join(p, 'disk.img'), 'w').write('data'); print(p)")
    await cluster.create(pod("writer", container(command=py(write), volumeMounts=[
        {"name": "dv", "mountPath": "/data"}]), volumes=[{"name": "dv", "persistentVolumeClaim": {
            "claimName": "target"}}]))
    waiting = await settle(runner, cluster, "writer", phase("Pending"))
    assert waiting is not None
    assert not waiting["spec"].get("nodeName")
    scheduled = next(c for c in waiting["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert "target" in scheduled["message"]
    pvc = await cluster.get("v1", "PersistentVolumeClaim", "target", NAMESPACE)
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "pycdi-node"
    # The PVC watch maps the claim back to the pod that waits for it.
    spec = controllers(cluster, runner)[0]
    assert (spec.kind, spec.watches[0].kind) == ("Pod", "PersistentVolumeClaim")
    assert list(spec.watches[0].map_to_keys(pvc)) == [Key(NAMESPACE, "writer")]

    volume = tmp_path / "pv-target"
    volume.mkdir()
    await bind(cluster, "target", volume)  # what the provisioner does once the node is selected
    done = await settle(runner, cluster, "writer", phase("Succeeded", "Failed"))
    assert done is not None and done["status"]["phase"] == "Succeeded"
    assert done["spec"]["nodeName"] == "pycdi-node"
    assert (volume / "disk.img").read_text() == "data"
    events = {e["reason"]: e for e in (await cluster.list("v1", "Event", NAMESPACE)).items}
    assert events["Scheduled"]["message"] == f"Successfully assigned {NAMESPACE}/writer to pycdi-node"
    assert events["FailedScheduling"]["type"] == "Warning"
    assert (runner.state_dir / "pods" / NAMESPACE / "writer" / "root" / "main" / "data").resolve() == volume

    await cluster.delete("v1", "Pod", "writer", NAMESPACE)
    await settle(runner, cluster, "writer", lambda p: p is None)
    assert not (runner.state_dir / "pods" / NAMESPACE / "writer").exists()
    assert (volume / "disk.img").read_text() == "data"  # the pod's files went; the volume's data stays


async def test_a_missing_claim_keeps_the_pod_pending(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await cluster.create(pod("orphan", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "nope"}}]))
    waiting = await settle(runner, cluster, "orphan", phase("Pending"))
    assert waiting is not None
    scheduled = next(c for c in waiting["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["message"] == '0/1 nodes are available: persistentvolumeclaim "nope" not found.'


def test_volume_files_honour_items_modes_and_optional() -> None:
    data = {"a": b"1", "b": b"2"}
    assert volume_files(Volume("v", "secret", "s", default_mode=0o600), data) == [("a", b"1", 0o600),
                                                                                  ("b", b"2", 0o600)]
    items = _items(("b", "dir/b.txt", 0o400))
    assert volume_files(Volume("v", "configMap", "c", items=items), data) == [("dir/b.txt", b"2", 0o400)]
    missing = Volume("v", "secret", "s", items=_items(("zz", "zz", None)))
    with pytest.raises(VolumeError, match="references non-existent secret key: zz"):
        volume_files(missing, data)
    assert volume_files(Volume("v", "secret", "s", items=missing.items, optional=True), data) == []
    with pytest.raises(VolumeError, match="must be relative"):
        volume_files(Volume("v", "secret", "s", items=_items(("a", "../escape", None))), data)


def test_key_data_decodes_secrets_and_config_maps() -> None:
    assert key_data(secret("s", {"k": b"\x00\xff"})) == {"k": b"\x00\xff"}
    cm = config_map("c", {"t": "text"}) | {"binaryData": {"b": "AAE="}}
    assert key_data(cm) == {"t": b"text", "b": b"\x00\x01"}


def _items(*entries: tuple[str, str, int | None]) -> tuple[KeyToPath, ...]:
    return tuple(KeyToPath(key, path, mode) for key, path, mode in entries)


async def test_a_pod_bound_by_hand_to_an_unbound_claim_waits_in_container_creating(cluster: EmbeddedCluster,
                                                                                   runner: PodRunner) -> None:
    await cluster.create(claim("unbound"))
    await cluster.create(pod("prebound", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "unbound"}}],
                             nodeName="pycdi-node"))
    waiting = await settle(runner, cluster, "prebound", waiting_reason("ContainerCreating"))
    assert waiting is not None and waiting["status"]["phase"] == "Pending"
    assert container_status(waiting)["state"]["waiting"]["message"] == 'persistentvolumeclaim "unbound" is not bound'
    events = {e["reason"]: e for e in (await cluster.list("v1", "Event", NAMESPACE)).items}
    assert events["FailedMount"]["source"] == {"component": "kubelet", "host": "pycdi-node"}


async def test_prepare_volumes_sets_every_volume_up_and_reports_the_first_failure_in_order(
        cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """The volumes are set up at once; the result is as if in turn: every path, and when several fail, the
    error of the first in the pod's order (a missing claim listed before a missing Secret)."""
    for name in ("data", "scratch"):
        await cluster.create(claim(name))
        (tmp_path / name).mkdir()
        await bind(cluster, name, tmp_path / name)
    await cluster.create(secret("certs", {"tls.crt": b"CERT"}))
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
               {"name": "certs", "secret": {"secretName": "certs"}},
               {"name": "scratch", "persistentVolumeClaim": {"claimName": "scratch"}},
               {"name": "tmp", "emptyDir": {}}]
    created = await cluster.create(pod("prep", volumes=volumes))
    paths = PodPaths(tmp_path / "state", NAMESPACE, "prep")
    prepared = await prepare_volumes(cluster, parse_pod(created), paths)
    assert list(prepared) == ["data", "certs", "scratch", "tmp"]
    assert (prepared["data"].path, prepared["scratch"].path) == (tmp_path / "data", tmp_path / "scratch")
    assert (prepared["certs"].path / "tls.crt").read_bytes() == b"CERT"
    assert prepared["tmp"].path.is_dir()

    broken = [{"name": "gone", "persistentVolumeClaim": {"claimName": "gone"}},
              {"name": "nosecret", "secret": {"secretName": "nosecret"}}]
    for order in (broken, broken[::-1]):
        created = await cluster.create(pod(f"broken-{order[0]['name']}", volumes=order))
        with pytest.raises(VolumeError) as raised:
            await prepare_volumes(cluster, parse_pod(created), paths)
        first = order[0]["name"]
        assert ('"gone" not found' if first == "gone" else '"nosecret" not found') in str(raised.value)
