"""Admission: what the API server checks before it stores a write, as pure handlers.

`admit(request, lookup)` runs every handler on one create or update and raises the `cdi.cluster`
error a real API server would answer with (`BadRequest` for strict decoding, `Invalid` for schema and
webhook rules, `Forbidden` for an admission plugin's refusal); it returns quietly when the write may
be stored. The embedded store (`cdi.embedded.store`) calls it inside the write transaction for every
client's write, so `cdi apply`, a controller and a test all meet the same rules; in Kubernetes mode the
same handlers are what CDI's webhooks answer with, while the API server applies its own rules to
Kubernetes' kinds.

Handlers: `cdi.admission.cdikinds` (CDI kinds: strict decoding, schema, upstream's webhook rules,
immutability), `cdi.admission.claims` (PersistentVolumeClaim: storage quantities, immutability of
a claim's spec, expansion only where the StorageClass allows it), `cdi.admission.pods` (a pod's
spec is immutable; nodeName comes through a Binding) and `cdi.admission.snapshots` (the CEL rules of
the VolumeSnapshot CRDs, which a real API server enforces itself).

Mutating admission (`Mutate`) needs the control plane's signing key, so it is not part of `admit`: the
one mutation, the clone token of a cross-namespace clone DataVolume (`cdi.admission.clonetoken`, with
the pure authorization rules in `cdi.admission.clonesource`), is handed to the store by whoever opens
it with the key, and served by `cdi apiserver`'s datavolume-mutate webhook on a cluster.
"""

from cdi.admission.cdikinds import admit_cdi_kind
from cdi.admission.claims import admit_claim
from cdi.admission.pods import admit_pod
from cdi.admission.request import AdmissionRequest, Lookup, Mutate
from cdi.admission.snapshots import admit_snapshot

__all__ = ["AdmissionRequest", "Lookup", "Mutate", "admit"]


def admit(request: AdmissionRequest, lookup: Lookup) -> None:
    """Raise the API server's error if `request` may not be stored; return if it may."""
    admit_cdi_kind(request)
    admit_claim(request, lookup)
    admit_pod(request)
    admit_snapshot(request)
