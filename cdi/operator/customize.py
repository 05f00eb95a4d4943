"""The CDI resource's spec applied to the rendered install, pure: placement, replicas, pull policy, patches, flags.

`customize(documents, spec)` returns the documents the operator applies and the parts of the spec it had to
refuse (each a sentence for the Degraded condition):

* `infra.nodeSelector` (added to the install's own `kubernetes.io/os: linux`), `infra.affinity` and
  `infra.tolerations` go into the three Deployments' pod templates; `infra.deploymentReplicas`,
  `apiServerReplicas` and `uploadProxyReplicas` into their replicas; `imagePullPolicy` into every container;
  `priorityClass` into `priorityClassName`;
* `customizeComponents.flags` (`api`, `controller`, `uploadProxy`) are appended to the matching container's
  args, `-k value` for a one-letter key and `--key value` otherwise (our components parse GNU-style options;
  upstream's Go components take `-key value`); an empty value is a bare switch;
* `customizeComponents.patches` apply to the object of `resourceType` (its kind) and `resourceName`: `json`
  (RFC 6902), `merge` (RFC 7386) and `strategic` (Kubernetes' strategic merge patch, with the Go types'
  merge keys: `cdi.operator.strategicmerge`), as upstream applies them. A patch whose target is not part of
  the install, or that does not apply, is refused. Objects changed by customization carry upstream's
  `cdi.kubevirt.io/customizer-identifier` annotation, a hash of the customization.

`stamp` then marks each object as the operator's: a controller ownerReference to the CR and the
`operator.cdi.kubevirt.io/createVersion` (kept from the stored object) and `updateVersion` labels.
The `workload` placement is not part of the install: the controllers read it from the active CR whenever they
create a worker pod (`cdi.controllers.placement`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cdi.cluster.errors import ApiError
from cdi.contracts import deployment as dep
from cdi.embedded.jsonpatch import apply_json_patch
from cdi.operator import contract as c
from cdi.operator.strategicmerge import StrategicMergeError, strategic_merge

Object = dict[str, Any]
CUSTOMIZER_ANNOTATION = "cdi.kubevirt.io/customizer-identifier"
# The Deployment each infra replica count and each flags entry belongs to.
REPLICAS = {dep.CONTROLLER: "deploymentReplicas", dep.APISERVER: "apiServerReplicas",
            dep.UPLOADPROXY: "uploadProxyReplicas"}
FLAGS = {dep.CONTROLLER: "controller", dep.APISERVER: "api", dep.UPLOADPROXY: "uploadProxy"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def customize(documents: list[Object], spec: Mapping[str, Any]) -> tuple[list[Object], list[str]]:
    docs = copy.deepcopy(documents)
    problems: list[str] = []
    customization = spec.get("customizeComponents") or {}
    identifier = hashlib.sha1(json.dumps(customization, sort_keys=True).encode()).hexdigest() \
        if customization.get("patches") or customization.get("flags") else None
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in REPLICAS:
            _deployment(doc, spec)
            if identifier and (customization.get("flags") or {}).get(FLAGS[doc["metadata"]["name"]]):
                _annotate(doc, identifier)
    for patch in customization.get("patches") or []:
        problem = _patch(docs, patch)
        if problem is None and identifier:
            for doc in _targets(docs, patch):
                _annotate(doc, identifier)
        if problem is not None:
            problems.append(problem)
    return docs, problems


def _deployment(doc: Object, spec: Mapping[str, Any]) -> None:
    name = doc["metadata"]["name"]
    infra = spec.get("infra") or {}
    pod = doc["spec"]["template"]["spec"]
    if infra.get("nodeSelector"):
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **infra["nodeSelector"]}
    if infra.get("affinity"):
        pod["affinity"] = copy.deepcopy(infra["affinity"])
    if infra.get("tolerations"):
        pod["tolerations"] = copy.deepcopy(infra["tolerations"])
    if infra.get(REPLICAS[name]) is not None:
        doc["spec"]["replicas"] = infra[REPLICAS[name]]
    if spec.get("priorityClass"):
        pod["priorityClassName"] = spec["priorityClass"]
    flags = ((spec.get("customizeComponents") or {}).get("flags") or {}).get(FLAGS[name]) or {}
    for container in pod["containers"]:
        if spec.get("imagePullPolicy"):
            container["imagePullPolicy"] = spec["imagePullPolicy"]
        if flags and container["name"] == name:
            container["args"] = [*container.get("args", []), *flag_args(flags)]


def flag_args(flags: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in flags.items():
        args.append(f"-{key}" if len(key) == 1 else f"--{key}")
        if value:
            args.append(value)
    return args


def _targets(docs: list[Object], patch: Mapping[str, Any]) -> list[Object]:
    kind, name = str(patch.get("resourceType", "")), patch.get("resourceName")
    return [d for d in docs if d["kind"].lower() == kind.lower() and d["metadata"]["name"] == name]


def _patch(docs: list[Object], patch: Mapping[str, Any]) -> str | None:
    """Apply one patch in place; the reason it was refused, or None."""
    what = f"customizeComponents patch of {patch.get('resourceType')} {patch.get('resourceName')}"
    targets = _targets(docs, patch)
    if not targets:
        return f"{what}: no such object in the install"
    try:
        body = json.loads(patch.get("patch") or "")
    except json.JSONDecodeError as e:
        return f"{what}: the patch is not JSON ({e.msg})"
    for doc in targets:
        try:
            match patch.get("type"):
                case "json":
                    patched = apply_json_patch(doc, body)
                case "strategic":
                    patched = strategic_merge(doc, body)
                case _:
                    patched = merge_patch(doc, body)
        except ApiError as e:
            return f"{what}: {e.message}"
        except StrategicMergeError as e:
            return f"{what}: {e}"
        doc.clear()
        doc.update(patched)
    return None


def _annotate(doc: Object, identifier: str) -> None:
    doc["metadata"].setdefault("annotations", {})[CUSTOMIZER_ANNOTATION] = identifier


def stamp(doc: Object, owner: Object, version: str, created: str | None) -> Object:
    """The document as the operator applies it: controlled by the CR, labelled with the versions."""
    stamped = copy.deepcopy(doc)
    meta = stamped["metadata"]
    meta["labels"] = {**meta.get("labels", {}), c.CREATE_VERSION_LABEL: created or version,
                      c.UPDATE_VERSION_LABEL: version}
    meta["ownerReferences"] = [owner]
    return stamped
