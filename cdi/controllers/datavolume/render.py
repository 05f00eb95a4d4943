"""Turns a DataVolume's `pvc` or `storage` request into a concrete PersistentVolumeClaim spec, as
upstream's renderPvcSpec does: `pvc` is used verbatim; `storage` is completed from the default
StorageClass and the class's StorageProfile (access and volume modes) and its size is inflated by the
filesystem overhead. Pure; the import controller calls it with what it observed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdi.api import DataVolume, dump_object
from cdi.cluster.protocol import Object
from cdi.contracts.annotations import (
    ANN_DEFAULT_STORAGE_CLASS,
    ANN_DEFAULT_VIRT_STORAGE_CLASS,
    ANN_MIN_SUPPORTED_PVC_SIZE,
)
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, meta, name_of, storage_request
from cdi.sizing import required_space

MIN_SIZE = 1 << 20


class RenderError(Exception):
    """The claim cannot be rendered yet; `reason` becomes the Ready condition's reason and the event's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class StorageView:
    storage_classes: list[Object]
    profiles: dict[str, Object]
    config: ConfigView


def default_storage_class(classes: list[Object], kubevirt_content: bool) -> Object | None:
    """The virt-default class for disk images, else the cluster default; newest, then by name."""
    def pick(annotation: str) -> Object | None:
        marked = sorted((sc for sc in classes if annotations_of(sc).get(annotation) == "true"), key=name_of)
        marked.sort(key=lambda sc: str(meta(sc).get("creationTimestamp", "")), reverse=True)  # stable: ties by name
        return marked[0] if marked else None

    return (pick(ANN_DEFAULT_VIRT_STORAGE_CLASS) if kubevirt_content else None) or pick(ANN_DEFAULT_STORAGE_CLASS)


def render_pvc_spec(dv: DataVolume, view: StorageView) -> dict[str, Any]:
    if dv.spec.pvc is not None:
        return dict(dump_object(dv)["spec"]["pvc"])
    if dv.spec.storage is None:
        raise RenderError("ErrClaimNotValid", "DataVolume has neither spec.pvc nor spec.storage")
    spec: dict[str, Any] = dict(dump_object(dv)["spec"]["storage"])
    archive = dv.spec.content_type.value == "archive"
    if archive:
        if spec.get("volumeMode") == "Block":
            raise RenderError("ErrClaimNotValid", "ContentType Archive cannot have block volumeMode")
        spec["volumeMode"] = "Filesystem"
    class_name = spec.get("storageClassName")
    if class_name is None:
        chosen = default_storage_class(view.storage_classes, not archive)
        class_name = name_of(chosen) if chosen else None
        if class_name:
            spec["storageClassName"] = class_name
    _complete_modes(spec, class_name, view)
    _size(spec, class_name, view)
    return spec


def _complete_modes(spec: dict[str, Any], class_name: str | None, view: StorageView) -> None:
    access, volume_mode = spec.get("accessModes") or [], spec.get("volumeMode")
    if access and volume_mode:
        return
    if not class_name:
        if not access:
            raise RenderError("ErrClaimNotValid",
                              "PVC spec is missing accessMode and no storageClass to choose profile")
        return
    profile = view.profiles.get(class_name)
    sets = ((profile or {}).get("status") or {}).get("claimPropertySets") or []
    if not access and not volume_mode:
        if not sets:
            raise RenderError("ErrClaimNotValid", f"no accessMode specified in StorageProfile {class_name}")
        spec["accessModes"], spec["volumeMode"] = list(sets[0]["accessModes"]), sets[0]["volumeMode"]
    elif not access:
        match = next((s for s in sets if s.get("volumeMode") == volume_mode), None)
        if match is None:
            raise RenderError("ErrClaimNotValid", f"no accessMode specified in StorageProfile {class_name} "
                                                  f"for volumeMode {volume_mode}")
        spec["accessModes"] = list(match["accessModes"])
    else:
        match = next((s for s in sets if set(s.get("accessModes") or []) & set(access)), None)
        if match is not None:
            spec["volumeMode"] = match["volumeMode"]


def _size(spec: dict[str, Any], class_name: str | None, view: StorageView) -> None:
    size = storage_request(spec)
    if size is None:
        raise RenderError("ErrClaimNotValid", "PVC Spec is not valid - missing storage size")
    if size < MIN_SIZE:
        raise RenderError("ErrClaimNotValid", "PVC Spec is not valid - storage size should be at least 1MiB")
    if spec.get("volumeMode", "Filesystem") != "Block":
        size = required_space(view.config.overhead(class_name), size)
    profile = view.profiles.get(class_name or "") or {}
    minimum = annotations_of(profile).get(ANN_MIN_SUPPORTED_PVC_SIZE)
    if minimum:
        size = max(size, storage_request({"resources": {"requests": {"storage": minimum}}}) or 0)
    resources = dict(spec.get("resources") or {})
    resources["requests"] = {**(resources.get("requests") or {}), "storage": str(size)}
    spec["resources"] = resources
