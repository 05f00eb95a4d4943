"""CDI's CustomResourceDefinitions as an install ships them.

The definitions themselves come from `cdi.api.crdgen` (schemas from the API models, names and columns
from `cdi.api.kinds`), the one source the embedded store and the Kubernetes harness use too; this
module only adds the install's labels, so `kubectl get crd -l app=containerized-data-importer` lists
them. The aggregated UploadTokenRequest is not a CRD: `cdi.install.webhooks` registers its APIService.
"""

from __future__ import annotations

import copy

from cdi.api.crdgen import all_crds
from cdi.install.objects import Object, labels


def crds() -> list[Object]:
    documents = []
    for crd in all_crds():
        crd = copy.deepcopy(crd)
        crd["metadata"]["labels"] = {**labels(), **(crd["metadata"].get("labels") or {})}
        documents.append(crd)
    return documents
