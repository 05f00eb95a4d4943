"""The ObjectTransfer kind (deprecated upstream): move a PVC or DataVolume to another namespace.

Modelled so that existing objects parse and its CRD can still be installed; no new code should create
one. The transfer controller, if it is ever ported, is the only reader.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from cdi.api.meta import CDI_API_VERSION, ApiModel, ApiObject, Condition


class ObjectTransferPhase(StrEnum):
    """Progress of a transfer."""

    UNSET = ""
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    ERROR = "Error"


class TransferSource(ApiModel):
    """The object to move (a PersistentVolumeClaim or DataVolume)."""

    api_version: str | None = Field(default=None, alias="apiVersion")
    kind: str
    namespace: str
    name: str
    required_annotations: dict[str, str] = Field(default_factory=dict)


class TransferTarget(ApiModel):
    """Where it goes."""

    namespace: str | None = None
    name: str | None = None


class ObjectTransferSpec(ApiModel):
    """Source, target and the optional parent transfer."""

    source: TransferSource
    target: TransferTarget
    parent_name: str | None = None


class ObjectTransferStatus(ApiModel):
    """Transfer bookkeeping."""

    data: dict[str, str] = Field(default_factory=dict)
    phase: ObjectTransferPhase = ObjectTransferPhase.UNSET
    conditions: list[Condition] = Field(default_factory=list)


class ObjectTransfer(ApiObject):
    """A request to move a PVC or DataVolume between namespaces."""

    api_version: str = Field(CDI_API_VERSION, alias="apiVersion")
    kind: str = "ObjectTransfer"
    spec: ObjectTransferSpec
    status: ObjectTransferStatus = Field(default_factory=ObjectTransferStatus)
