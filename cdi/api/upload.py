"""The UploadTokenRequest kind (`upload.cdi.kubevirt.io/v1beta1`): ask for a token to upload to a PVC.

Not a CRD: it is served by cdi-apiserver as an aggregated, create-only API. `cdi upload` creates one and
the apiserver answers with a signed token in `status.token`, which the upload proxy verifies.
"""

from __future__ import annotations

from pydantic import Field

from cdi.api.meta import UPLOAD_API_VERSION, ApiModel, ApiObject


class UploadTokenRequestSpec(ApiModel):
    """The PVC the token will allow uploading to."""

    pvc_name: str = Field(alias="pvcName")


class UploadTokenRequestStatus(ApiModel):
    """The issued token."""

    token: str | None = None


class UploadTokenRequest(ApiObject):
    """A request for a short-lived upload token."""

    api_version: str = Field(UPLOAD_API_VERSION, alias="apiVersion")
    kind: str = "UploadTokenRequest"
    spec: UploadTokenRequestSpec
    status: UploadTokenRequestStatus = Field(default_factory=UploadTokenRequestStatus)
