"""Discovery and OpenAPI documents of the aggregated `upload.cdi.kubevirt.io` API, as plain data.

The kube-apiserver's aggregator asks an APIService's server for `/apis/<group>/<version>` (availability
and discovery; it falls back to this legacy discovery when the server does not speak the aggregated
`apidiscovery.k8s.io/v2` format) and merges `/openapi/v2` and `/openapi/v3` into its own documents;
`kubectl api-resources` and `kubectl explain` then show UploadTokenRequest. One resource,
`uploadtokenrequests`, with the one verb upstream serves: create. The schema comes from the API models
(`cdi.api.upload`), as the CRDs' do. These endpoints are open, as upstream's are.
"""

from __future__ import annotations

from typing import Any, Final

from cdi.api.kinds import KINDS
from cdi.api.openapi import structural_schema
from cdi.api.upload import UploadTokenRequestSpec, UploadTokenRequestStatus
from cdi.cluster.protocol import Object

INFO: Final = KINDS["UploadTokenRequest"]
GROUP: Final = INFO.group
VERSION: Final = INFO.versions[0]
GROUP_VERSION: Final = INFO.api_version
RESOURCE_PATH: Final = f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{INFO.plural}"
OPENAPI_V3_PATH: Final = f"apis/{GROUP_VERSION}"
_DEFINITION = f"io.kubevirt.cdi.upload.{VERSION}.{INFO.kind}"


def _version() -> Object:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_group() -> Object:
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [_version()],
            "preferredVersion": _version()}


def api_group_list() -> Object:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list() -> Object:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [{
        "name": INFO.plural, "singularName": INFO.singular, "namespaced": True, "kind": INFO.kind,
        "verbs": ["create"], "shortNames": list(INFO.short_names)}]}


def _schema() -> dict[str, Any]:
    return {"type": "object", "description": "UploadTokenRequest is the CR used to initiate a CDI upload",
            "required": ["spec"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"},
                           "spec": structural_schema(UploadTokenRequestSpec),
                           "status": structural_schema(UploadTokenRequestStatus)},
            "x-kubernetes-group-version-kind": [{"group": GROUP, "version": VERSION, "kind": INFO.kind}]}


def openapi_v2() -> Object:
    """A Swagger 2.0 document with the UploadTokenRequest definition (paths are the aggregator's business)."""
    return {"swagger": "2.0", "info": {"title": "cdi-apiserver", "version": VERSION}, "paths": {},
            "definitions": {_DEFINITION: _schema()}}


def openapi_v3_root() -> Object:
    """`/openapi/v3`: where the document of each group-version is."""
    return {"paths": {OPENAPI_V3_PATH: {"serverRelativeURL": f"/openapi/v3/{OPENAPI_V3_PATH}"}}}


def openapi_v3() -> Object:
    return {"openapi": "3.0.0", "info": {"title": "cdi-apiserver", "version": VERSION}, "paths": {},
            "components": {"schemas": {_DEFINITION: _schema()}}}
