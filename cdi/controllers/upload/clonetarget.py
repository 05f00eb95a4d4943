"""What the upload controller needs to serve a host-assisted clone target (a PVC annotated
`k8s.io/CloneRequest: <srcNs>/<srcPvc>`, upstream's legacy flow): which source it names, the client
certificate name its upload server must accept, and whether the source fits, as pure functions.

Upstream's rules (`clone-controller.go` / `ValidateCanCloneSourceAndTargetSpec`): content types must be
equal; the source's usable space must not exceed the target's (unless `permissiveClone`); volume modes
may differ because the content is a disk image. Ours refuses archive content outright: a filesystem
tree is not a disk image and the clone protocol only carries disk images. Used by
`cdi.controllers.upload.controller`; the source pod side is `cdi.controllers.hostclone`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts import importer_env as env
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, name_of, namespace_of, storage_request
from cdi.controllers.workerpodspec import is_block
from cdi.quantity import QuantityError, parse_quantity
from cdi.sizing import usable_space

INCOMPATIBLE = "ErrIncompatiblePVC"
ARCHIVE_REFUSED = "CloneContentTypeNotSupported"


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def clone_source_of(pvc: Object) -> tuple[str, str] | None:
    """(namespace, name) of the source a clone target names; the target's namespace when it names none."""
    value = annotations_of(pvc).get(ann.ANN_CLONE_REQUEST)
    if not value:
        return None
    namespace, _, name = value.rpartition("/")
    return (namespace or namespace_of(pvc)), name


def is_clone_target(pvc: Object) -> bool:
    return clone_source_of(pvc) is not None


def clone_client_name(pvc: Object) -> str:
    source = clone_source_of(pvc)
    assert source is not None, "a clone target names its source"
    return cp.client_name(source[0], source[1], namespace_of(pvc), name_of(pvc))


def content_type(pvc: Object) -> str:
    return annotations_of(pvc).get(ann.ANN_CONTENT_TYPE) or env.CONTENT_KUBEVIRT


def capacity(pvc: Object) -> int | None:
    """The claim's size: its bound capacity, else its request."""
    text = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
    if text:
        try:
            return parse_quantity(str(text))
        except QuantityError:
            pass
    return storage_request(pvc.get("spec") or {})


def usable(pvc: Object, config: ConfigView) -> int | None:
    size = capacity(pvc)
    if size is None or is_block(pvc):
        return size
    return usable_space(config.overhead((pvc.get("spec") or {}).get("storageClassName")), size)


def incompatibility(source: Object, target: Object, config: ConfigView) -> Refusal | None:
    """Why the source cannot be cloned into the target, or None."""
    if content_type(source) == env.CONTENT_ARCHIVE or content_type(target) == env.CONTENT_ARCHIVE:
        return Refusal(ARCHIVE_REFUSED, "host-assisted clone of content type archive is not supported: only disk "
                                        "images (content type kubevirt) can be cloned")
    if content_type(source) != content_type(target):
        return Refusal(INCOMPATIBLE, f"source contentType ({content_type(source)}) and target contentType "
                                     f"({content_type(target)}) do not match")
    if annotations_of(target).get(ann.ANN_PERMISSIVE_CLONE) == "true":
        return None
    have, need = usable(target, config), usable(source, config)
    if have is not None and need is not None and have < need:
        return Refusal(INCOMPATIBLE, f"target resources requests storage size is smaller than the source {have} "
                                     f"< {need}")
    return None
