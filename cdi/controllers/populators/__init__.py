"""CDI's import and upload volume populators: claims whose `dataSourceRef` names a VolumeImportSource or a
VolumeUploadSource are filled through a PVC′ that the PVC-level import and upload controllers serve, and
PVC′'s volume is then handed to the claim. `sources` (what PVC′ carries per kind), `prime` (PVC′ and what the
target mirrors from it), `rebind` (the volume hand-over), `plan` (the pure decision) and `controller` (observe
and apply; `controllers()` for the manager). The clone populator lives in `cdi.controllers.clone`."""
