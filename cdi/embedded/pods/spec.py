"""The parts of a v1 Pod the local pod runner acts on, parsed once at the edge into frozen values.

`parse_pod` turns the stored document into a `PodInfo`; everything after it (the layout table, env
resolution, volume preparation, status) works on these types and never on raw dicts. Fields the
runner ignores (requests, probes, affinity, capabilities) are not modelled. A shape the API
server would have rejected raises `PodSpecError`, which the runner reports on the container as
`CreateContainerConfigError`.

The container runtime (`containers`) also reads what a process cannot honour: each container's
`resources.limits` (`Limits`) and the user it runs as (`RunAs`, the container's `securityContext`
over the pod's), and which mounts are read-only. The process runner ignores them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdi.contracts import importer_env
from cdi.quantity import parse_quantity, parse_quantity_decimal

DEFAULT_GRACE_SECONDS = 30.0  # the API server's default terminationGracePeriodSeconds
RESTART_POLICIES = ("Always", "OnFailure", "Never")


class PodSpecError(ValueError):
    """The pod spec has a shape the API server would have rejected."""


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class VolumeDevice:
    name: str
    device_path: str


@dataclass(frozen=True)
class KeyRef:
    """`valueFrom.secretKeyRef` / `configMapKeyRef` (kind "Secret" / "ConfigMap")."""

    kind: str
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class FieldRef:
    field_path: str


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""
    source: KeyRef | FieldRef | None = None


@dataclass(frozen=True)
class EnvFrom:
    """`envFrom[]`: every key of a Secret or ConfigMap, optionally prefixed."""

    kind: str
    name: str
    prefix: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Limits:
    """`resources.limits`: memory in bytes, CPU in cores; None where the container sets none."""

    memory: int | None = None
    cpu: float | None = None


@dataclass(frozen=True)
class RunAs:
    """The effective `securityContext` identity: None where neither container nor pod sets a field."""

    user: int | None = None
    group: int | None = None
    fs_group: int | None = None


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    devices: tuple[VolumeDevice, ...] = ()
    working_dir: str = ""
    termination_message_path: str = importer_env.DEFAULT_TERMINATION_LOG
    fallback_to_logs_on_error: bool = False
    limits: Limits = dataclasses.field(default_factory=Limits)
    # The container's own securityContext fields only; `PodInfo.run_as` merges the pod's.
    run_as: RunAs = dataclasses.field(default_factory=RunAs)


@dataclass(frozen=True)
class KeyToPath:
    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True)
class Volume:
    """One entry of `spec.volumes`: `kind` is the source's field name ("persistentVolumeClaim",
    "emptyDir", "secret", "configMap", "hostPath", or whatever else was given); `ref` names the claim,
    Secret or ConfigMap, or holds the host path."""

    name: str
    kind: str
    ref: str = ""
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = 0o644
    optional: bool = False


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    node_name: str
    restart_policy: str
    grace_seconds: float
    deleting: bool
    containers: tuple[ContainerSpec, ...]
    volumes: tuple[Volume, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    security: RunAs = dataclasses.field(default_factory=RunAs)  # the pod's securityContext

    def run_as(self, container: ContainerSpec) -> RunAs:
        """Who `container` runs as: its own securityContext's fields over the pod's."""
        own = container.run_as
        return RunAs(own.user if own.user is not None else self.security.user,
                     own.group if own.group is not None else self.security.group, self.security.fs_group)

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)

    def claim_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.ref for v in self.volumes if v.kind == "persistentVolumeClaim"))


def parse_pod(obj: Mapping[str, Any]) -> PodInfo:
    """The pod as the runner sees it; `PodSpecError` when a field has the wrong shape."""
    try:
        return _pod(obj)
    except PodSpecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PodSpecError(f"the pod spec is malformed: {type(e).__name__}: {e}") from e


def _pod(obj: Mapping[str, Any]) -> PodInfo:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    policy = str(spec.get("restartPolicy") or "Always")
    if policy not in RESTART_POLICIES:
        raise PodSpecError(f'spec.restartPolicy: Unsupported value: "{policy}"')
    grace = spec.get("terminationGracePeriodSeconds")
    return PodInfo(
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
        node_name=str(spec.get("nodeName") or ""), restart_policy=policy,
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else max(0.0, float(grace)),
        deleting=bool(meta.get("deletionTimestamp")),
        containers=tuple(_container(c) for c in spec.get("containers") or ()),
        volumes=tuple(_volume(v) for v in spec.get("volumes") or ()),
        labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
        security=_run_as(spec.get("securityContext") or {}))


def _run_as(raw: Mapping[str, Any]) -> RunAs:
    def number(field: str) -> int | None:
        value = raw.get(field)
        return None if value is None else int(value)
    return RunAs(number("runAsUser"), number("runAsGroup"), number("fsGroup"))


def _limits(raw: Mapping[str, Any]) -> Limits:
    limits = raw.get("limits") or {}
    memory, cpu = limits.get("memory"), limits.get("cpu")
    return Limits(None if memory is None else parse_quantity(memory),
                  None if cpu is None else float(parse_quantity_decimal(cpu)))


def _container(raw: Mapping[str, Any]) -> ContainerSpec:
    name = str(raw.get("name") or "")
    if not name:
        raise PodSpecError("spec.containers[].name: Required value")
    return ContainerSpec(
        name=name, image=str(raw.get("image") or ""),
        command=tuple(str(word) for word in raw.get("command") or ()),
        args=tuple(str(word) for word in raw.get("args") or ()),
        env=tuple(_env_var(e) for e in raw.get("env") or ()),
        env_from=tuple(_env_from(e) for e in raw.get("envFrom") or ()),
        mounts=tuple(VolumeMount(str(m["name"]), str(m["mountPath"]), str(m.get("subPath") or ""),
                                 bool(m.get("readOnly"))) for m in raw.get("volumeMounts") or ()),
        devices=tuple(VolumeDevice(str(d["name"]), str(d["devicePath"])) for d in raw.get("volumeDevices") or ()),
        working_dir=str(raw.get("workingDir") or ""),
        termination_message_path=str(raw.get("terminationMessagePath") or importer_env.DEFAULT_TERMINATION_LOG),
        fallback_to_logs_on_error=raw.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        limits=_limits(raw.get("resources") or {}), run_as=_run_as(raw.get("securityContext") or {}))


def _env_var(raw: Mapping[str, Any]) -> EnvVar:
    name, source = str(raw["name"]), raw.get("valueFrom")
    if not source:
        return EnvVar(name, str(raw.get("value") or ""))
    for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if field in source:
            ref = source[field]
            return EnvVar(name, source=KeyRef(kind, str(ref.get("name") or ""), str(ref["key"]),
                                              bool(ref.get("optional"))))
    if "fieldRef" in source:
        return EnvVar(name, source=FieldRef(str(source["fieldRef"]["fieldPath"])))
    raise PodSpecError(f"env {name}: valueFrom {sorted(source)} is not supported by the local pod runner")


def _env_from(raw: Mapping[str, Any]) -> EnvFrom:
    for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
        if field in raw:
            ref = raw[field]
            return EnvFrom(kind, str(ref.get("name") or ""), str(raw.get("prefix") or ""), bool(ref.get("optional")))
    raise PodSpecError("envFrom needs a secretRef or a configMapRef")


def _volume(raw: Mapping[str, Any]) -> Volume:
    name = str(raw["name"])
    if "persistentVolumeClaim" in raw:
        return Volume(name, "persistentVolumeClaim", str(raw["persistentVolumeClaim"]["claimName"]))
    if "emptyDir" in raw:
        return Volume(name, "emptyDir")
    if "hostPath" in raw:
        return Volume(name, "hostPath", str(raw["hostPath"]["path"]))
    for field, ref_field in (("secret", "secretName"), ("configMap", "name")):
        if field in raw:
            source = raw[field] or {}
            mode = source.get("defaultMode")
            return Volume(name, field, str(source.get(ref_field) or ""), _items(source.get("items") or ()),
                          0o644 if mode is None else int(mode), bool(source.get("optional")))
    kinds = sorted(key for key in raw if key != "name")
    return Volume(name, kinds[0] if kinds else "unknown")


def _items(raw: Any) -> tuple[KeyToPath, ...]:
    return tuple(KeyToPath(str(i["key"]), str(i["path"]), None if i.get("mode") is None else int(i["mode"]))
                 for i in raw)
