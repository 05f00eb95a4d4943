"""A container's environment and command line, as kubelet builds them: pure functions.

`resolve_env` evaluates `envFrom` and `env` (plain values with `$(VAR)` references to earlier
variables, `secretKeyRef`, `configMapKeyRef`, `fieldRef`) against a snapshot of the Secrets,
ConfigMaps and pod fields the runner read first; a missing object or key raises `EnvError` with
kubelet's wording, which the runner shows as `CreateContainerConfigError`. `process_env` then rewrites
in-pod paths to local ones (volume variables confined to the container, `layout.confine`) and adds
the layout's variables (`layout`), and `command_line` expands
`$(VAR)` in command and args the same way. Called by `starter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdi.embedded.pods.layout import CONFINED_VARIABLES, ContainerLayout
from cdi.embedded.pods.spec import ContainerSpec, FieldRef, KeyRef, PodInfo

KeyData = Mapping[str, bytes]


class EnvError(ValueError):
    """A variable cannot be resolved: kubelet's CreateContainerConfigError."""


@dataclass(frozen=True)
class EnvSources:
    """What variables may read: Secrets and ConfigMaps by (kind, name) (None when missing) and pod fields."""

    objects: Mapping[tuple[str, str], KeyData | None] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)


def referenced_objects(container: ContainerSpec) -> set[tuple[str, str]]:
    """The (kind, name) of every Secret and ConfigMap the container's variables read."""
    refs = {(source.kind, source.name) for source in container.env_from}
    refs |= {(var.source.kind, var.source.name) for var in container.env if isinstance(var.source, KeyRef)}
    return refs


def pod_fields(pod: PodInfo, pod_ip: str, host_ip: str, service_account: str = "") -> dict[str, str]:
    """The values `fieldRef.fieldPath` may name (the downward API's env subset)."""
    fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
              "spec.nodeName": pod.node_name, "spec.serviceAccountName": service_account or "default",
              "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip}
    fields |= {f"metadata.labels['{key}']": value for key, value in pod.labels.items()}
    fields |= {f"metadata.annotations['{key}']": value for key, value in pod.annotations.items()}
    return fields


def resolve_env(container: ContainerSpec, sources: EnvSources, namespace: str) -> dict[str, str]:
    """The container's variables in kubelet's order: envFrom first, then env (later names win)."""
    resolved: dict[str, str] = {}
    for source in container.env_from:
        data = sources.objects.get((source.kind, source.name))
        if data is None:
            if source.optional:
                continue
            raise EnvError(f'{source.kind.lower()} "{source.name}" not found')
        resolved.update({source.prefix + key: _text(value) for key, value in data.items()})
    for var in container.env:
        if isinstance(var.source, KeyRef):
            value = _key_value(var.source, sources, namespace)
            if value is None:
                continue
            resolved[var.name] = value
        elif isinstance(var.source, FieldRef):
            if var.source.field_path not in sources.fields:
                raise EnvError(f"env {var.name}: unsupported fieldPath {var.source.field_path}")
            resolved[var.name] = sources.fields[var.source.field_path]
        else:
            resolved[var.name] = expand(var.value, resolved)
    return resolved


def process_env(base: Mapping[str, str], container_env: Mapping[str, str], layout: ContainerLayout,
                markers: Mapping[str, str]) -> dict[str, str]:
    """The process's environment: the runner's base, our layout variables, then the container's own
    (rewritten to local paths; a variable the pod sets itself wins), then the runner's markers."""
    environ = dict(base) | dict(layout.env)
    environ |= {name: layout.confine(value) if name in CONFINED_VARIABLES else layout.rewrite(value)
                for name, value in container_env.items()}
    return environ | dict(markers)


def command_line(container: ContainerSpec, container_env: Mapping[str, str], layout: ContainerLayout,
                 entrypoint: tuple[str, ...]) -> list[str]:
    """command + args with `$(VAR)` expanded and in-pod paths rewritten; `entrypoint` stands in for
    the image's ENTRYPOINT when the container sets no command."""
    words = [*(container.command or entrypoint), *container.args]
    return [layout.rewrite(expand(word, container_env)) for word in words]


def image_entrypoint(image: str) -> tuple[str, ...]:
    """The image's program name, for images named after their entrypoint (".../cdi-importer:v1" →
    "cdi-importer"); empty when the image has no usable name."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return (name,) if name else ()


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`, the rest stays."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if value.startswith("$(", i):
            end = value.find(")", i + 2)
            if end != -1:
                name = value[i + 2:end]
                out.append(variables.get(name, value[i:end + 1]))
                i = end + 1
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


def _key_value(ref: KeyRef, sources: EnvSources, namespace: str) -> str | None:
    data = sources.objects.get((ref.kind, ref.name))
    if data is None:
        if ref.optional:
            return None
        raise EnvError(f'{ref.kind.lower()} "{ref.name}" not found')
    if ref.key not in data:
        if ref.optional:
            return None
        raise EnvError(f"couldn't find key {ref.key} in {ref.kind} {namespace}/{ref.name}")
    return _text(data[ref.key])


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")
